"""The native zoo format: many checkpoints per safetensors shard, an append-only manifest.

Layout of a zoo directory::

    zoo.json                      format version, the specs (with ids) and free ``meta``
    manifest.jsonl                one JSON object per checkpoint, appended in blocks
    shards/shard-00000.safetensors
    shards/shard-00001.safetensors ...

``zoo.json``::

    {"format": "wspace.zoo", "format_version": 1,
     "specs": [{"id": "spec-0", "fingerprint": "...", "describe": "...", "spec": {...}}],
     "meta": {...}}

``meta`` is free; by convention ``meta["tasks"]`` holds the task definitions (name ->
dict) and ``meta["builder"]`` how the zoo was built. The family config of each
architecture is part of its spec (``spec.family`` / ``spec.family_kwargs``).

Each manifest row: ``id`` (unique string), ``run``, ``seed``, ``task``, ``epoch``,
``hparams`` (dict), ``metrics`` (dict), any extra fields the builder passed, and
``spec_id``, ``shard`` (file name under ``shards/``), ``row`` (index in the shard).

A shard holds one spec: key = the spec's parameter key, tensor ``[n, *shape]``; its
safetensors metadata repeats the spec (so ``wspace.io.load_weight_space`` reads a
shard on its own) and the ids of its rows.

Crash safety (a build may be killed at any time and resumed):

1. a new spec is added to ``zoo.json`` (atomic rewrite) before any shard uses it;
2. a shard is written completely (temp file + rename) *before* its rows are appended
   to the manifest, in one ``write`` + ``fsync``;
3. so a shard listed in the manifest is complete. On reopening, :class:`ZooWriter`
   drops a torn last manifest line, rolls back a block whose rows were only partly
   appended, and deletes shards that no row lists (orphans from a kill between 2 and
   3). Readers ignore a torn last line and never look at unlisted shards.
"""
from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, read_json, save_safetensors
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

from .adapters.base import _NP_DTYPES, ZooSource, read_safetensors_header

try:  # advisory lock so that two writers never append to one zoo
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

__all__ = [
    "ZOO_FORMAT",
    "ZOO_FORMAT_VERSION",
    "ZooWriter",
    "NativeSource",
    "is_native_zoo",
    "read_safetensors_header",
]

ZOO_FORMAT = "wspace.zoo"
ZOO_FORMAT_VERSION = 1
ZOO_JSON = "zoo.json"
MANIFEST = "manifest.jsonl"
SHARDS = "shards"
_LOCK = ".writer.lock"
_SHARD_RE = re.compile(r"^shard-(\d+)\.safetensors$")
_RESERVED = ("spec_id", "shard", "row")
_HAVE_PREADV = hasattr(os, "preadv")

def is_native_zoo(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory with a native ``zoo.json``."""
    p = Path(path) / ZOO_JSON
    if not p.is_file():
        return False
    try:
        with open(p) as f:
            return json.load(f).get("format") == ZOO_FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


class _ShardReader:
    """One shard: its validated layout, a file descriptor for ``preadv`` of row runs and,
    on first need, a read-only memory map for gathering scattered rows."""

    _fd: int | None = None  # class defaults: __del__ runs even when __init__ raised
    _map: tuple[mmap.mmap, int] | None = None
    _arrays: list[np.ndarray] | None = None

    def __init__(self, path: Path, spec: WeightSpaceSpec):
        self.path = path
        info, meta, start = read_safetensors_header(path)
        missing = [k for k in spec.keys if k not in info]
        if missing:
            raise WeightSpaceError(f"shard lacks the spec's key(s) {missing}", file=path, tensor=missing[0])
        n = None
        layout = []
        for p in spec.params:
            d = info[p.key]
            shape = tuple(d["shape"])
            if shape[1:] != p.shape or (n is not None and shape[0] != n):
                raise WeightSpaceError(f"has shape {shape}, expected [n, {', '.join(map(str, p.shape))}]",
                                       file=path, tensor=p.key)
            n = shape[0]
            dtype = _NP_DTYPES[d["dtype"]]
            # (tag, numpy dtype, per-row shape, bytes per row)
            layout.append((d["dtype"], dtype, shape[1:], math.prod(shape[1:]) * dtype.itemsize))
        self.n = n
        self.layout = layout
        self.tags = tuple(t for t, *_ in layout)
        self.row_bytes = tuple(rb for *_, rb in layout)
        # file offset of row 0 of each tensor (read_safetensors_header checked they lie in the file)
        self.offsets = tuple(start + info[p.key]["data_offsets"][0] for p in spec.params)

    def fd(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as e:
                raise WeightSpaceError(f"cannot open shard: {e}", file=self.path) from e
        return self._fd

    def mapping(self) -> tuple[mmap.mmap, int]:
        """The shard's read-only memory map and its address (mapped on first call).

        Callers hold the returned map object while they use the address: dropping the
        reader (cache eviction) then cannot unmap memory that is still being read.
        """
        if self._map is None:
            try:
                with open(self.path, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as e:
                raise WeightSpaceError(f"cannot map shard: {e}", file=self.path) from e
            self._map = (mm, np.frombuffer(mm, dtype=np.uint8).__array_interface__["data"][0])
        return self._map

    def arrays(self) -> list[np.ndarray]:
        """``[n, *shape]`` read-only views of the shard's tensors (over the memory map)."""
        if self._arrays is None:
            mm, _ = self.mapping()
            self._arrays = [np.frombuffer(mm, dtype=dt, count=self.n * rb // dt.itemsize, offset=off)
                            .reshape(self.n, *shape) for (_, dt, shape, rb), off in zip(self.layout, self.offsets)]
        return self._arrays

    def gather(self, rows: np.ndarray, out: list[np.ndarray], pos: np.ndarray) -> None:
        """Copy shard rows ``rows`` into ``out[k][pos]``."""
        for o, arr in zip(out, self.arrays()):
            o[pos] = arr[rows]

    def read_run(self, first: int, out: list[np.ndarray], dst: slice) -> None:
        """Copy rows ``first, first + 1, ...`` into ``out[k][dst]``: one ``preadv`` per tensor,
        the same kernel copy as a plain ``read`` (no page faults, no mapped pages kept)."""
        fd = self.fd()
        for o, off, rb in zip(out, self.offsets, self.row_bytes):
            buf = o[dst]
            got = os.preadv(fd, [buf], off + first * rb)
            if got != buf.nbytes:
                raise WeightSpaceError(f"truncated shard: read {got} of {buf.nbytes} bytes", file=self.path)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._map = self._arrays = None  # unmapped once no batch in progress holds the map

    def __del__(self) -> None:  # pragma: no cover - best effort
        self.close()


class _AddressSpan:
    """``__array_interface__`` of a byte matrix over raw addresses: row ``i`` is the
    ``row_bytes`` bytes starting at address ``lo + i``. Indexing it with byte offsets
    gathers rows from several memory maps in one numpy call; only the indexed rows are
    read, and every offset used points into a live map (see ``NativeSource._gather``)."""

    def __init__(self, lo: int, hi: int, row_bytes: int):
        self.__array_interface__ = {"data": (lo, True), "shape": (hi - lo - row_bytes + 1, row_bytes),
                                    "strides": (1, 1), "typestr": "|u1", "version": 3}


# --------------------------------------------------------------------------- zoo.json / manifest
def _read_zoo_json(path: Path) -> dict:
    f = path / ZOO_JSON
    doc = read_json(f, missing="not a native zoo (no zoo.json)")
    if not isinstance(doc, dict) or doc.get("format") != ZOO_FORMAT:
        raise WeightSpaceError(f"not a native zoo description (format is not '{ZOO_FORMAT}')", file=f)
    version = doc.get("format_version")
    if not isinstance(version, int) or version > ZOO_FORMAT_VERSION:
        raise WeightSpaceError(f"zoo format version {version!r} is not supported (this library reads up to "
                               f"{ZOO_FORMAT_VERSION})", file=f)
    specs = doc.get("specs", [])
    if not isinstance(specs, list) or not all(isinstance(s, dict) and "id" in s and "spec" in s for s in specs):
        raise WeightSpaceError("'specs' must be a list of {id, spec}", file=f)
    return doc


def _parse_specs(doc: dict, path: Path) -> "OrderedDict[str, WeightSpaceSpec]":
    out: "OrderedDict[str, WeightSpaceSpec]" = OrderedDict()
    for s in doc["specs"]:
        try:
            out[str(s["id"])] = WeightSpaceSpec.from_dict(s["spec"])
        except WeightSpaceError as e:
            raise WeightSpaceError(f"spec '{s['id']}': {e}", file=path / ZOO_JSON) from e
    return out


def _read_manifest(path: Path) -> tuple[list[dict], list[int], bool]:
    """Rows of ``manifest.jsonl``, the byte offset where each starts, and whether a torn
    last line (no trailing newline: an interrupted append) was dropped."""
    f = path / MANIFEST
    if not f.exists():
        return [], [], False
    data = f.read_bytes()
    torn = bool(data) and not data.endswith(b"\n")
    body = data[: data.rfind(b"\n") + 1] if torn else data
    lines = body.split(b"\n")[:-1] if body else []
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    try:  # one C-level parse for the common, healthy case
        rows = json.loads(b"[" + b",".join(lines) + b"]") if lines else []
    except (json.JSONDecodeError, UnicodeDecodeError):
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise WeightSpaceError(f"line {i + 1} is not valid JSON ({e}); the manifest is corrupt", file=f) from e
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not all(k in r for k in ("id", "spec_id", "shard", "row")):
            raise WeightSpaceError(f"line {i + 1} lacks one of id, spec_id, shard, row", file=f)
    return rows, offsets, torn


def _line_length(manifest: Path, offsets: list[int]) -> int:
    """Length (with its newline) of the last complete manifest line."""
    with open(manifest, "rb") as f:
        f.seek(offsets[-1])
        line = f.readline()
    return len(line) if line.endswith(b"\n") else 0


# --------------------------------------------------------------------------- reader
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
        doc = _read_zoo_json(path)
        specs = _parse_specs(doc, path)
        rows, _, torn = _read_manifest(path)
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
        self._tags: dict[str, tuple[str, ...]] = {}
        self._readers: "OrderedDict[int, _ShardReader]" = OrderedDict()
        # rows already found finite by this source: listed shards are immutable (written
        # once, atomically), so later reads of the same bytes need no second check
        self._finite = np.zeros(len(rows), dtype=bool)

    def __getstate__(self) -> dict:  # DataLoader workers re-open their own files
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        return state

    def _reader(self, code: int, spec_id: str) -> _ShardReader:
        r = self._readers.get(code)
        if r is not None:
            self._readers.move_to_end(code)
            return r
        r = _ShardReader(self.path / SHARDS / self.shard_names[code], self.specs[spec_id])
        lo, hi = int(self._row_lo[code]), int(self._row_hi[code])
        if lo < 0 or hi >= r.n:
            raise WeightSpaceError(f"manifest row index {hi if hi >= r.n else lo} is out of range for a shard of "
                                   f"{r.n} rows", file=r.path)
        tags = self._tags.setdefault(spec_id, r.tags)
        if r.tags != tags:
            raise WeightSpaceError(f"stores {list(r.tags)} tensors but other shards of spec {spec_id} store "
                                   f"{list(tags)}", file=r.path)
        self._readers[code] = r
        while len(self._readers) > self.max_open_shards:
            self._readers.popitem(last=False)[1].close()
        return r

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
        if _HAVE_PREADV and len(cuts) < max(1, B // 8):  # long runs: a few preadv calls
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
            rows = np.asarray(_AddressSpan(lo, hi, rb))[row0[:, k] + local * rb]  # [B, rb] bytes, a new array
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


# --------------------------------------------------------------------------- writer
def _jsonable(value: Any, where: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise WeightSpaceError(f"{where} is not JSON-serializable: {e}") from e
    return value


def _plain(v: Any) -> Any:
    """Tensors / numpy scalars -> Python numbers, so records serialize."""
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class ZooWriter:
    """Create or resume a native zoo and append checkpoints in shards.

    Example::

        with ZooWriter("zoos/digits-mlp", meta={"tasks": {...}}) as w:
            todo = [r for r in planned if r["id"] not in w.done_ids]
            ...
            w.append(ws, records)   # len(records) == len(ws); one shard + its manifest rows

    ``meta`` is merged into the stored ``meta`` (new values win). Reopening an existing
    zoo validates ``zoo.json``, repairs what a kill can leave behind (see the module
    docstring) and exposes the ids already written as ``done_ids``. Appending an id
    that is already present raises :class:`WeightSpaceError`.
    """

    def __init__(self, path: str | os.PathLike, meta: dict | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / SHARDS).mkdir(exist_ok=True)
        self._lock_fh = None
        self._acquire_lock()
        try:
            self._open(meta)
        except BaseException:
            self._release_lock()
            raise

    # ------------------------------------------------------------------ opening
    def _acquire_lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        fh = open(self.path / _LOCK, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.close()
            raise WeightSpaceError("another ZooWriter is writing this zoo", file=self.path) from e
        self._lock_fh = fh

    def _release_lock(self) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _open(self, meta: dict | None) -> None:
        zoo_json = self.path / ZOO_JSON
        if zoo_json.exists():
            doc = _read_zoo_json(self.path)
            self._specs = _parse_specs(doc, self.path)
            self._dtypes = {str(e["id"]): e.get("dtype") for e in doc["specs"]}
            self._meta = dict(doc.get("meta") or {})
            if meta:
                self._meta.update(_jsonable(_plain(meta), "meta"))
                self._write_zoo_json()
        else:
            self._specs = OrderedDict()
            self._dtypes = {}
            self._meta = dict(_jsonable(_plain(meta or {}), "meta"))
            self._write_zoo_json()
        self._recover()

    def _recover(self) -> None:
        manifest = self.path / MANIFEST
        rows, offsets, _ = _read_manifest(self.path)
        size = manifest.stat().st_size if manifest.exists() else 0
        keep = offsets[-1] + _line_length(manifest, offsets) if rows else 0  # drops a torn last line
        # Roll back a block whose rows were only partly appended (a kill mid-write): the
        # builder then redoes the whole block, and the shard becomes an orphan.
        if rows:
            last = rows[-1]["shard"]
            start = len(rows)
            while start > 0 and rows[start - 1]["shard"] == last:
                start -= 1
            info, _, _ = read_safetensors_header(self.path / SHARDS / last)
            n = next(iter(info.values()))["shape"][0] if info else 0
            if len(rows) - start < n:
                keep = offsets[start]
                rows = rows[:start]
        if keep != size:
            with open(manifest, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
        listed = {r["shard"] for r in rows}
        for r in rows:
            if r["spec_id"] not in self._specs:
                raise WeightSpaceError(f"row '{r['id']}' names unknown spec id '{r['spec_id']}'", file=manifest)
        for s in listed:
            if not (self.path / SHARDS / s).is_file():
                raise WeightSpaceError("shard listed in the manifest is missing", file=self.path / SHARDS / s)
        for f in (self.path / SHARDS).iterdir():  # orphans: written but never listed
            if f.name not in listed and (_SHARD_RE.match(f.name) or f.name.endswith(".tmp")):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        ids = [r["id"] for r in rows]
        self.done_ids: set[str] = set(ids)
        if len(self.done_ids) != len(ids):
            raise WeightSpaceError("the manifest lists a checkpoint id twice", file=manifest)
        nums = [int(_SHARD_RE.match(s).group(1)) for s in listed if _SHARD_RE.match(s)]
        self._next_shard = max(nums) + 1 if nums else 0
        self._n_rows = len(rows)

    def _write_zoo_json(self) -> None:
        doc = {
            "format": ZOO_FORMAT,
            "format_version": ZOO_FORMAT_VERSION,
            "specs": [
                {"id": sid, "fingerprint": s.fingerprint, "describe": s.describe(), "dtype": self._dtypes.get(sid),
                 "spec": s.to_dict()}
                for sid, s in self._specs.items()
            ],
            "meta": self._meta,
        }
        with atomic_write(self.path / ZOO_JSON) as f:
            json.dump(doc, f, indent=1)

    # ------------------------------------------------------------------ API
    @property
    def specs(self) -> dict[str, WeightSpaceSpec]:
        """The architectures written so far (id -> spec)."""
        return dict(self._specs)

    @property
    def meta(self) -> dict:
        return dict(self._meta)

    def __len__(self) -> int:
        return self._n_rows

    def spec_id(self, spec: WeightSpaceSpec, dtype: torch.dtype | None = None) -> str:
        """The id of ``spec`` in this zoo, registering it (atomically) if new."""
        for sid, s in self._specs.items():
            if s == spec:
                if self._dtypes.get(sid) is None and dtype is not None:
                    self._dtypes[sid] = str(dtype).removeprefix("torch.")
                    self._write_zoo_json()
                return sid
        sid = f"spec-{len(self._specs)}"
        while sid in self._specs:
            sid += "_"
        self._specs[sid] = spec
        self._dtypes[sid] = None if dtype is None else str(dtype).removeprefix("torch.")
        self._write_zoo_json()
        return sid

    def append(self, ws: WeightSpace, records: Sequence[Mapping[str, Any]]) -> None:
        """Write ``ws`` (B networks of one spec) as one shard, then append its B manifest rows.

        ``records[i]`` describes ``ws[i]``: ``id`` (required, unique in the zoo), and
        optionally ``run``, ``seed``, ``task``, ``epoch``, ``hparams`` (dict),
        ``metrics`` (dict) and any other JSON-serializable field. ``spec_id``, ``shard``
        and ``row`` are set by the writer. Non-finite weights are refused (naming the
        record) so that every stored checkpoint is usable.
        """
        if self._lock_fh is None and fcntl is not None:
            raise WeightSpaceError("the writer is closed", file=self.path)
        if not isinstance(ws, WeightSpace):
            raise WeightSpaceError(f"append expects a WeightSpace, got {type(ws).__name__}")
        B = len(ws)
        if len(records) != B:
            raise WeightSpaceError(f"{len(records)} records for {B} networks", file=self.path)
        if B == 0:
            return
        rows, ids = [], []
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping) or rec.get("id") in (None, ""):
                raise WeightSpaceError(f"record #{i} has no 'id'", file=self.path)
            rid = str(rec["id"])
            bad = [k for k in _RESERVED if k in rec]
            if bad:
                raise WeightSpaceError(f"record '{rid}' sets reserved field(s) {bad}", file=self.path)
            row = {"id": rid, "run": None, "seed": None, "task": None, "epoch": None, "hparams": {}, "metrics": {}}
            row.update({str(k): _plain(v) for k, v in rec.items()})
            row["id"] = rid
            for d in ("hparams", "metrics"):
                if not isinstance(row[d], dict):
                    raise WeightSpaceError(f"record '{rid}': '{d}' must be a dict", file=self.path)
            _jsonable(row, f"record '{rid}'")
            rows.append(row)
            ids.append(rid)
        dup_new = len(set(ids)) != len(ids)
        clash = [i for i in ids if i in self.done_ids]
        if dup_new or clash:
            which = clash[:3] if clash else sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise WeightSpaceError(f"duplicate checkpoint id(s) {which}: ids must be unique in a zoo", file=self.path)
        for p, t in zip(ws.spec.params, ws.tensors):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad_rows = torch.nonzero(~torch.isfinite(t.reshape(B, -1)).all(1)).flatten().tolist()
                raise WeightSpaceError(
                    f"non-finite weights in record(s) {[ids[b] for b in bad_rows[:3]]}; drop diverged runs before "
                    "appending", file=self.path, tensor=p.key)
        sid = self.spec_id(ws.spec, ws.dtype)
        stored = getattr(torch, self._dtypes[sid])
        if ws.dtype != stored:  # one dtype per spec, so that reads never mix shard dtypes
            ws = ws.to(stored)
        name = f"shard-{self._next_shard:05d}.safetensors"
        meta = {"wspace.spec": ws.spec.to_json(), "wspace.zoo.spec_id": sid, "wspace.zoo.ids": json.dumps(ids),
                "wspace.zoo.format_version": str(ZOO_FORMAT_VERSION)}
        save_safetensors(self.path / SHARDS / name, ws.detach().state_dict(), meta)  # 1) the shard, atomically
        for j, row in enumerate(rows):
            row.update(spec_id=sid, shard=name, row=j)
        text = "".join(json.dumps(r) + "\n" for r in rows).encode()
        with open(self.path / MANIFEST, "ab") as f:  # 2) then its rows, in one write
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self._next_shard += 1
        self._n_rows += B
        self.done_ids.update(ids)

    def close(self) -> None:
        """Release the writer lock (everything appended is already on disk)."""
        self._release_lock()

    def __enter__(self) -> "ZooWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self._release_lock()
