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
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, save_safetensors
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
    """Memory-mapped rows of one shard: ``read(rows)`` copies only the requested rows."""

    def __init__(self, path: Path, spec: WeightSpaceSpec):
        self.path = path
        info, meta, start = read_safetensors_header(path)
        missing = [k for k in spec.keys if k not in info]
        if missing:
            raise WeightSpaceError(f"shard lacks the spec's key(s) {missing}", file=path, tensor=missing[0])
        n = None
        for p in spec.params:
            shape = tuple(info[p.key]["shape"])
            if shape[1:] != p.shape or (n is not None and shape[0] != n):
                raise WeightSpaceError(f"has shape {shape}, expected [n, {', '.join(map(str, p.shape))}]",
                                       file=path, tensor=p.key)
            n = shape[0]
        self.n = n
        self._mm = np.memmap(path, dtype=np.uint8, mode="r")
        self._arrays = []
        for p in spec.params:
            d = info[p.key]
            dtype = _NP_DTYPES[d["dtype"]]
            b, e = d["data_offsets"]
            arr = np.frombuffer(self._mm, dtype=dtype, count=(e - b) // dtype.itemsize, offset=start + b)
            self._arrays.append((p.key, d["dtype"], arr.reshape(d["shape"])))

    def gather(self, rows: np.ndarray, out: list[np.ndarray], pos: np.ndarray) -> None:
        """Copy shard rows ``rows`` into ``out[k][pos]`` (numpy fancy indexing touches only those rows)."""
        if rows.size and (rows.min() < 0 or rows.max() >= self.n):
            raise WeightSpaceError(f"manifest row index {int(rows.max())} is out of range for a shard of {self.n} rows",
                                   file=self.path)
        def run(idx: np.ndarray) -> bool:
            return idx.size > 0 and int(idx[-1]) - int(idx[0]) == idx.size - 1 and bool((np.diff(idx) == 1).all())

        # one copy where possible: contiguous rows are a slice, a contiguous destination takes np.take(out=)
        dst = slice(int(pos[0]), int(pos[-1]) + 1) if run(pos) else None
        src = slice(int(rows[0]), int(rows[-1]) + 1) if run(rows) else None
        for o, (_, _, arr) in zip(out, self._arrays):
            if dst is not None and src is not None:
                o[dst] = arr[src]
            elif dst is not None:
                np.take(arr, rows, axis=0, out=o[dst])
            else:
                o[pos] = arr[rows]


# --------------------------------------------------------------------------- zoo.json / manifest
def _read_zoo_json(path: Path) -> dict:
    f = path / ZOO_JSON
    try:
        with open(f) as fh:
            doc = json.load(fh)
    except FileNotFoundError as e:
        raise WeightSpaceError("not a native zoo (no zoo.json)", file=f) from e
    except (OSError, json.JSONDecodeError) as e:
        raise WeightSpaceError(f"cannot read zoo.json: {e}", file=f) from e
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
    shards are memory-mapped on first use (a bounded cache of open shards)."""

    format = "native"
    max_open_shards = 64

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
        self._readers: "OrderedDict[int, _ShardReader]" = OrderedDict()

    def __getstate__(self) -> dict:  # DataLoader workers re-open their own memory maps
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        return state

    def _reader(self, code: int, spec: WeightSpaceSpec) -> _ShardReader:
        r = self._readers.get(code)
        if r is None:
            r = _ShardReader(self.path / SHARDS / self.shard_names[code], spec)
            self._readers[code] = r
            while len(self._readers) > self.max_open_shards:
                self._readers.popitem(last=False)
        else:
            self._readers.move_to_end(code)
        return r

    def read(self, rows: np.ndarray) -> WeightSpace:
        rows = np.asarray(rows, dtype=np.int64)
        spec = self.specs[self.spec_ids[int(self.spec_codes[rows[0]])]]
        shard = self.shard_of[rows]
        local = self.row_in_shard[rows]
        out: list[np.ndarray] | None = None
        tags: list[str] = []
        order = np.argsort(shard, kind="stable")
        codes, starts = np.unique(shard[order], return_index=True)
        bounds = np.append(starts, len(rows))
        for code, a, b in zip(codes.tolist(), bounds[:-1], bounds[1:]):  # one gather per shard
            pos = order[a:b]
            reader = self._reader(code, spec)
            if out is not None and [tag for _, tag, _ in reader._arrays] != tags:
                raise WeightSpaceError(f"stores {[tag for _, tag, _ in reader._arrays]} tensors but other shards of "
                                       f"spec {self.spec_ids[int(self.spec_codes[rows[0]])]} store {tags}",
                                       file=reader.path)
            if out is None:
                tags = [tag for _, tag, _ in reader._arrays]
                out = [np.empty((len(rows), *arr.shape[1:]), dtype=arr.dtype) for _, _, arr in reader._arrays]
            reader.gather(local[pos], out, pos)
        tensors = []
        for p, o, tag in zip(spec.params, out, tags):
            if o.dtype.kind == "f" and not np.isfinite(o).all():  # one vectorized check per tensor
                bad = int(np.flatnonzero(~np.isfinite(o.reshape(len(rows), -1)).all(1))[0])
                raise WeightSpaceError(
                    f"contains non-finite values (checkpoint '{self.records[int(rows[bad])]['id']}')",
                    file=self.path / SHARDS / self.shard_names[int(shard[bad])], tensor=p.key)
            t = torch.from_numpy(o)
            tensors.append(t.view(torch.bfloat16) if tag == "BF16" else t)
        return WeightSpace(spec, tensors)


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
