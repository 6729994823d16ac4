"""Writing a native zoo: :class:`ZooWriter` (create or resume, repair, append shards)."""
from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, read_safetensors_header, save_safetensors
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

from .layout import (MANIFEST, RESERVED, SHARD_IDS_KEY, SHARD_RE, SHARD_SPEC_KEY, SHARDS, ZOO_FORMAT,
                     ZOO_FORMAT_VERSION, ZOO_JSON, line_length, parse_specs, read_manifest, read_zoo_json)
from .lock import WriterLock

__all__ = ["ZooWriter"]


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
        self._lock = WriterLock(self.path)
        self._lock.acquire()
        try:
            self._open(meta)
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------------ opening
    def _open(self, meta: dict | None) -> None:
        zoo_json = self.path / ZOO_JSON
        if zoo_json.exists():
            doc = read_zoo_json(self.path)
            self._specs = parse_specs(doc, self.path)
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
        rows, offsets, _ = read_manifest(self.path)
        size = manifest.stat().st_size if manifest.exists() else 0
        keep = offsets[-1] + line_length(manifest, offsets) if rows else 0  # drops a torn last line
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
            if f.name not in listed and (SHARD_RE.match(f.name) or f.name.endswith(".tmp")):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        ids = [r["id"] for r in rows]
        self.done_ids: set[str] = set(ids)
        if len(self.done_ids) != len(ids):
            raise WeightSpaceError("the manifest lists a checkpoint id twice", file=manifest)
        nums = [int(SHARD_RE.match(s).group(1)) for s in listed if SHARD_RE.match(s)]
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
        if not self._lock.held and self._lock.supported:
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
            bad = [k for k in RESERVED if k in rec]
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
        meta = {"wspace.spec": ws.spec.to_json(), SHARD_SPEC_KEY: sid, SHARD_IDS_KEY: json.dumps(ids),
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
        self._lock.release()

    def __enter__(self) -> "ZooWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self._lock.release()
