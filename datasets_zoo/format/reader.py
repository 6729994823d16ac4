"""The native zoo reader: :class:`NativeSource`."""
from __future__ import annotations

import json
import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace

from ..source import ZooSource
from .layout import MANIFEST, SHARD_IDS_KEY, SHARD_SPEC_KEY, SHARDS, parse_specs, read_manifest, read_zoo_json
from .shards import HAVE_PREADV, AddressSpan, ShardReader

__all__ = ["NativeSource"]


class NativeSource(ZooSource):
    """Reads a native zoo lazily: opening parses ``zoo.json`` and the manifest only;
    a shard's header is read on first use (a bounded cache of open shards).

    ``read`` copies each byte once: long runs of consecutive rows with one ``preadv``
    per tensor straight into the batch, scattered rows (shuffled batches) with one
    gather per tensor over the shards' memory maps. Every row is checked for NaN /
    infinity (one sum per floating tensor screens a batch) the first time this source
    reads it.
    """

    format = "native"
    max_open_shards = 64
    few_shards = 8  # scattered rows from at most this many shards: one gather per shard

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        doc = read_zoo_json(path)
        specs = parse_specs(doc, path)
        rows, _, torn = read_manifest(path)
        if torn:
            warnings.warn(f"{path / MANIFEST}: ignoring a torn last line (an interrupted append)", stacklevel=5)
        seen: set[str] = set()
        shard_names: list[str] = []
        shard_code: dict[str, int] = {}
        codes = np.empty(len(rows), dtype=np.int64)
        for i, r in enumerate(rows):
            rid = r["id"]
            if rid in seen:
                raise WeightSpaceError(f"duplicate checkpoint id '{rid}' (line {i + 1})", file=path / MANIFEST)
            seen.add(rid)
            s = r["shard"]
            c = shard_code.get(s)
            if c is None:
                c = shard_code[s] = len(shard_names)
                shard_names.append(s)
            codes[i] = c
        for s in shard_names:  # a stat per shard, no data read
            if not (path / SHARDS / s).is_file():
                raise WeightSpaceError("shard listed in the manifest is missing", file=path / SHARDS / s)
        super().__init__(path, specs, rows, doc.get("meta") or {})
        self.shard_names = shard_names
        self.shard_of = codes
        self.row_in_shard = np.fromiter((r["row"] for r in rows), dtype=np.int64, count=len(rows))
        # per shard, the row range the manifest uses: checked once when the shard is opened
        self._row_lo = np.full(len(shard_names), np.iinfo(np.int64).max, dtype=np.int64)
        self._row_hi = np.full(len(shard_names), -1, dtype=np.int64)
        np.minimum.at(self._row_lo, codes, self.row_in_shard)
        np.maximum.at(self._row_hi, codes, self.row_in_shard)
        # (shard, row) as one key; + 2 so that consecutive keys never join two shards
        self._stride = int(self._row_hi.max()) + 2 if len(rows) else 1
        self._by_shard: tuple[np.ndarray, np.ndarray] | None = None  # manifest rows grouped by shard (lazy)
        self._tags: dict[str, tuple[str, ...]] = {}
        self._readers: "OrderedDict[int, ShardReader]" = OrderedDict()
        # rows already found finite by this source: listed shards are immutable (written
        # once, atomically), so later reads of the same bytes need no second check
        self._finite = np.zeros(len(rows), dtype=bool)

    def __getstate__(self) -> dict:  # DataLoader workers re-open their own files
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        return state

    def _reader(self, code: int, spec_id: str) -> ShardReader:
        r = self._readers.get(code)
        if r is not None:
            self._readers.move_to_end(code)
            return r
        r = ShardReader(self.path / SHARDS / self.shard_names[code], self.specs[spec_id])
        lo, hi = int(self._row_lo[code]), int(self._row_hi[code])
        if lo < 0 or hi >= r.n:
            raise WeightSpaceError(f"manifest row index {hi if hi >= r.n else lo} is out of range for a shard of "
                                   f"{r.n} rows", file=r.path)
        self._check_ids(code, spec_id, r)
        tags = self._tags.setdefault(spec_id, r.tags)
        if r.tags != tags:
            raise WeightSpaceError(f"stores {list(r.tags)} tensors but other shards of spec {spec_id} store "
                                   f"{list(tags)}", file=r.path)
        self._readers[code] = r
        while len(self._readers) > self.max_open_shards:
            self._readers.popitem(last=False)[1].close()
        return r

    def _rows_of(self, code: int) -> np.ndarray:
        """Positions (in ``records``) of the manifest rows stored in shard ``code``."""
        if self._by_shard is None:
            order = np.argsort(self.shard_of, kind="stable")
            bounds = np.searchsorted(self.shard_of[order], np.arange(len(self.shard_names) + 1))
            self._by_shard = (order, bounds)
        order, bounds = self._by_shard
        return order[bounds[code]:bounds[code + 1]]

    def _check_ids(self, code: int, spec_id: str, reader: ShardReader) -> None:
        """The shard's own metadata (the checkpoint ids of its rows, its spec id, written by
        :class:`~datasets_zoo.format.ZooWriter`) must agree with the manifest rows that point
        into it: a swapped, replaced or foreign shard raises instead of returning another
        checkpoint's weights. Shards without that metadata are not checked."""
        meta = reader.meta
        sid = meta.get(SHARD_SPEC_KEY)
        if sid is not None and sid != spec_id:
            raise WeightSpaceError(f"the shard says it holds spec '{sid}' but the manifest reads it as spec "
                                   f"'{spec_id}' (shard files swapped or replaced?)", file=reader.path)
        text = meta.get(SHARD_IDS_KEY)
        if text is None:
            return
        try:
            ids = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise WeightSpaceError(f"corrupt shard metadata '{SHARD_IDS_KEY}': {e}", file=reader.path) from e
        if not isinstance(ids, list) or len(ids) != reader.n or not all(isinstance(i, str) for i in ids):
            raise WeightSpaceError(f"corrupt shard metadata '{SHARD_IDS_KEY}': expected a list of {reader.n} "
                                   "checkpoint ids", file=reader.path)
        for pos in self._rows_of(code).tolist():
            want, row = self.records[pos]["id"], int(self.row_in_shard[pos])
            if ids[row] != want:
                raise WeightSpaceError(
                    f"row {row} holds checkpoint '{ids[row]}' but the manifest ({MANIFEST}) lists '{want}' there: "
                    "shard files swapped, replaced or copied from another zoo", file=reader.path)

    def read(self, rows: np.ndarray) -> WeightSpace:
        rows = np.asarray(rows, dtype=np.int64)
        B = len(rows)
        spec_id = self.spec_ids[int(self.spec_codes[rows[0]])]
        spec = self.specs[spec_id]
        shard = self.shard_of[rows]
        local = self.row_in_shard[rows]
        # runs of consecutive rows of one shard, in the requested order (the key leaves a
        # gap between shards, so that no run crosses one)
        key = shard * self._stride + local
        cuts = np.flatnonzero(key[1:] - key[:-1] != 1) + 1
        if HAVE_PREADV and len(cuts) < max(1, B // 8):  # long runs: a few preadv calls
            out = self._read_runs(spec_id, shard, local, [0, *cuts.tolist()], B)
        else:  # scattered rows (shuffled batches)
            out = self._gather(spec_id, shard, local)
        tensors = [torch.from_numpy(o) for o in out]
        tensors = [t.view(torch.bfloat16) if tag == "BF16" else t for t, tag in zip(tensors, self._tags[spec_id])]
        if not self._finite[rows].all():
            for p, t in zip(spec.params, tensors):
                if t.is_floating_point():
                    self._check_finite(t, p.key, rows, shard)
            self._finite[rows] = True
        return WeightSpace(spec, tensors)

    def _read_runs(self, spec_id: str, shard: np.ndarray, local: np.ndarray, starts: list[int],
                   B: int) -> list[np.ndarray]:
        codes = shard[starts].tolist()
        # open (and validate) every shard before copying anything; held here, so that a
        # batch spanning more than max_open_shards shards reads each through one reader
        readers = {c: self._reader(c, spec_id) for c in codes}
        out = [np.empty((B, *shape), dtype=dt) for _, dt, shape, _ in readers[codes[0]].layout]
        for code, a, b, first in zip(codes, starts, starts[1:] + [B], local[starts].tolist()):
            readers[code].read_run(first, out, slice(a, b))
        return out

    def _gather(self, spec_id: str, shard: np.ndarray, local: np.ndarray) -> list[np.ndarray]:
        """Rows from any shards in any order. From a few shards: one fancy index per shard
        and tensor. From many (shuffled batches): one fancy index per tensor over the
        address span of all their memory maps, so the Python work does not grow with the
        number of shards."""
        codes, inv = np.unique(shard, return_inverse=True)
        readers = [self._reader(c, spec_id) for c in codes.tolist()]
        if len(readers) <= self.few_shards:
            B = len(local)
            out = [np.empty((B, *shape), dtype=dt) for _, dt, shape, _ in readers[0].layout]
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(len(readers) + 1)).tolist()
            for r, a, b in zip(readers, bounds[:-1], bounds[1:]):
                r.gather(local[order[a:b]], out, order[a:b])
            return out
        maps = [r.mapping() for r in readers]  # held until the copies are done
        base = np.fromiter((addr for _, addr in maps), dtype=np.int64, count=len(maps))
        lo = int(base.min())
        hi = int(max(addr + len(mm) for mm, addr in maps))
        # byte address (minus lo) of row 0 of each tensor, per row of the batch
        row0 = (base[:, None] - lo + np.array([r.offsets for r in readers], dtype=np.int64))[inv]
        out = []
        for k, (_, dt, shape, rb) in enumerate(readers[0].layout):
            rows = np.asarray(AddressSpan(lo, hi, rb))[row0[:, k] + local * rb]  # [B, rb] bytes, a new array
            out.append(rows.view(dt).reshape(len(local), *shape))
        del maps
        return out

    def _check_finite(self, t: torch.Tensor, key: str, rows: np.ndarray, shard: np.ndarray) -> None:
        """Raise, naming the shard, tensor and checkpoint, if ``t`` holds a NaN or an infinity.

        One sum decides the common case: a NaN or infinity makes the sum non-finite. A
        non-finite sum of finite values (overflow) only triggers the exact check below.
        """
        if math.isfinite(float(t.sum(dtype=torch.float32 if t.element_size() < 4 else None))):
            return
        bad = torch.nonzero(~torch.isfinite(t.reshape(len(t), -1)).all(1)).flatten()
        if len(bad):
            b = int(bad[0])
            raise WeightSpaceError(
                f"contains non-finite values (checkpoint '{self.records[int(rows[b])]['id']}')",
                file=self.path / SHARDS / self.shard_names[int(shard[b])], tensor=key)
