"""A plain folder of checkpoints (``*.safetensors`` / ``*.pt`` / ``*.pth`` state_dicts), with an
optional metadata table: the way to bring your own zoo.

Open it with ``Zoo.open("my_zoo/")`` (detected when no other format matches) or
``Zoo.open("my_zoo/", format="plain", spec=..., activation=..., w0=..., metadata=...)``.

Checkpoints
-----------
* Every file below the folder, at any depth, whose name ends in ``.safetensors``,
  ``.pt`` or ``.pth`` is a checkpoint; files and folders whose name starts with ``.``
  are skipped. The path of a single checkpoint file also works (a zoo of one file).
* A file holds one state_dict (``.pt`` / ``.pth`` are read with
  ``torch.load(weights_only=True)``; a ``{"state_dict": {...}}`` wrapper is accepted).
  A safetensors file written by :func:`wspace.io.save_weight_space` (``wspace.spec`` in
  its metadata) holds ``B`` stacked networks and gives ``B`` records.
* Every tensor must be finite; NaN / inf raise, naming the file and the tensor.

Records
-------
One record per network, with these fields before any metadata is applied:

==========  =================================================================================
field       value
==========  =================================================================================
``id``      the file's path relative to the folder, ``/``-separated, without its extension
            (``runs/seed0/ep10``); ``<id>#<b>`` for row ``b`` of a stacked file. Of two
            files that differ only by extension (``a.pt``, ``a.pth``), the later in sorted
            order keeps its extension (``a.pth``)
``run``     the file's ``id`` (all rows of a stacked file share it)
``file``    the file's path relative to the folder, with its extension
``seed``,   ``None``
``task``,
``epoch``
``hparams`` ``{}``
``metrics`` ``{}``
==========  =================================================================================

Metadata
--------
Fields come from two places, applied in this order (a later value replaces an earlier one):

1. a safetensors file's string ``__metadata__``: every key not starting with
   ``wspace.`` (e.g. ``{"test_acc": "0.91", "epoch": "3"}``), applied to every record of
   that file;
2. the metadata table, one row per checkpoint (or per file).

The table is the file passed as ``metadata=`` (any path), else found in the folder's top
level: the only file ending in ``.csv``, ``.csv.gz``, ``.json`` or ``.jsonl`` (hidden files
skipped); if there are several, the one named ``metadata.*``, ``index.*``, ``records.*`` or
``meta.*`` (several tables and no single such name raise: pass ``metadata=``). A table
found this way is ignored when none of its rows has a ``file`` or an ``id`` column (it is
some other file, e.g. a config), so a folder needs no table at all.

Table formats: CSV (first line = column names; ``.csv.gz`` gzipped), JSONL (one JSON
object per line), JSON (a list of objects; an object of equal-length column lists; or an
object ``{id: {field: value}}``, whose keys become the ``id`` column). Text values of CSV
cells and safetensors metadata are parsed: integers, floats, ``true`` / ``false``, ``nan``,
an empty cell / ``none`` / ``null`` (``None``), and JSON lists / objects (``[16, 16]``); any
other text stays a string.

Each row names its checkpoint(s) by one of two columns:

==========  =================================================================================
column      matches
==========  =================================================================================
``file``    the path relative to the folder, with extension (``runs/seed0/ep10.pt``): every
            record of that file (all rows of a stacked file)
``id``      used when ``file`` is absent or empty: a record ``id`` (``runs/seed0/ep10``,
            ``stack#3``), a file's ``id`` (every row of a stacked file), or a file's stem
            (``ep10``: every file of that stem, in any sub-folder)
==========  =================================================================================

A row with neither column, or naming a checkpoint that does not exist, raises (naming the
table and the missing file). Checkpoints without a row keep the fields above. The other
columns become record fields:

* ``metrics.<name>`` -> ``record["metrics"][name]`` (e.g. ``metrics.test_acc``);
* ``hparams.<name>`` and ``config.<name>`` -> ``record["hparams"][name]`` (``config.lr``);
* any other column -> a top-level field (``seed``, ``task``, ``epoch``, ``split``, ``label``,
  or ``test_acc``): :func:`datasets_zoo.source.record_value` and ``Zoo`` filters look a name
  up at the top level, then in ``metrics``, then in ``hparams``. Do not use ``spec_id``.

Example (``my_zoo/metadata.csv`` beside ``my_zoo/net0.pt``, ``my_zoo/net1.pt``)::

    file,seed,epoch,metrics.test_acc,hparams.lr
    net0.pt,0,10,0.91,0.001
    net1.pt,1,10,0.88,0.01

Architecture
------------
``spec=`` if given (e.g. ``spec_from_module(model)``: needed for CNNs, whose pooling,
padding and activations a state_dict does not store); else the ``wspace.spec`` of a
stacked file; else an MLP inferred from the first checkpoint's (in sorted path order) keys
and shapes: ``<layer>.weight`` ``[out, in]`` (+ ``<layer>.bias``) layers that chain, an
activation after every layer but the last (``activation=``, default ``relu``; any name of
:data:`wspace.modules.ACTIVATIONS` or its aliases; ``"sine"`` with ``w0=``, one value or
one per activation, for SIRENs). A folder holds one architecture: safetensors headers are
compared when opening, ``.pt`` / ``.pth`` files when read; a mismatch names both files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from wspace.errors import WeightSpaceError
from wspace.io import read_safetensors_header
from wspace.spec import WeightSpaceSpec

from .support import (FileSource, infer_mlp_spec, parse_scalar, read_table, relative_id,
                   state_dict_layout)

NAME = "plain"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".json", ".jsonl")
_SPEC_KEY = "wspace.spec"


def detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix in CHECKPOINT_SUFFIXES
    return any(p.suffix in CHECKPOINT_SUFFIXES for p in path.rglob("*"))


def _checkpoints(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out = []
    for p in path.rglob("*"):
        rel = p.relative_to(path).parts
        if p.suffix in CHECKPOINT_SUFFIXES and p.is_file() and not any(part.startswith(".") for part in rel):
            out.append(p)
    return sorted(out)


def _find_table(path: Path) -> Path | None:
    if path.is_file():
        return None
    cands = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(_TABLE_SUFFIXES)
                   and not p.name.startswith("."))
    if len(cands) <= 1:
        return cands[0] if cands else None
    preferred = [p for p in cands if p.name.lower().split(".")[0] in ("metadata", "index", "records", "meta")]
    if len(preferred) == 1:
        return preferred[0]
    raise WeightSpaceError(f"several metadata tables {[p.name for p in cands]}; pass metadata=", file=path)


def _apply_row(rec: dict, row: dict) -> None:
    for k, v in row.items():
        if k in ("file", "id"):
            continue
        head, _, tail = str(k).partition(".")
        if tail and head in ("metrics", "hparams", "config"):
            rec["metrics" if head == "metrics" else "hparams"][tail] = v
        else:
            rec[str(k)] = v


def open_source(path: Path, *, spec: WeightSpaceSpec | None = None, activation: str = "relu",
                w0: float | Sequence[float] = 30.0, metadata: str | Path | None = None) -> FileSource:
    """Read a plain folder (or a single file) of checkpoints (see the module docstring)."""
    root = path if path.is_dir() else path.parent
    files = _checkpoints(path)
    if not files:
        raise WeightSpaceError("no .safetensors / .pt / .pth checkpoint found", file=path)
    # Headers first (cheap): stacked files, per-file metadata, architecture comparison.
    headers: dict[Path, tuple[dict, dict]] = {}
    for f in files:
        if f.suffix == ".safetensors":
            info, meta, _ = read_safetensors_header(f)
            headers[f] = (info, meta)
    stacked_specs: dict[Path, WeightSpaceSpec] = {}
    for f, (_, meta) in headers.items():
        if _SPEC_KEY in meta:
            stacked_specs[f] = WeightSpaceSpec.from_json(meta[_SPEC_KEY])
    origin = files[0]
    if spec is None:
        if origin in stacked_specs:
            spec = stacked_specs[origin]
        else:
            spec = infer_mlp_spec(state_dict_layout(origin), activation=activation, w0=w0, file=origin)
    want = {p.key: p.shape for p in spec.params}
    for f, (info, _) in headers.items():  # one architecture per folder
        stacked = f in stacked_specs
        got = {k: tuple(v["shape"][1:] if stacked else v["shape"]) for k, v in info.items()}
        if got != want:
            diff = sorted(set(got) ^ set(want)) or [k for k in want if got.get(k) != want[k]]
            raise WeightSpaceError(
                f"mixes two architectures: this file differs from '{origin}' (tensor '{diff[0]}': "
                f"{got.get(diff[0])} vs {want.get(diff[0])}); a zoo holds one architecture: split the folder "
                "or pass spec=", file=f)
    records, rec_files, rows = [], [], []
    by_file: dict[str, list[int]] = {}
    by_id: dict[str, list[int]] = {}
    used: set[str] = set()
    for f in files:
        rel = f.relative_to(root).as_posix()
        rid = relative_id(f, root)
        if rid in used:  # a.pt next to a.safetensors: keep the extension to stay unique
            rid = rel
        used.add(rid)
        extra = {k: parse_scalar(v) for k, v in headers.get(f, ({}, {}))[1].items() if not k.startswith("wspace.")}
        n = headers[f][0][spec.keys[0]]["shape"][0] if f in stacked_specs else None
        for b in range(n) if n is not None else [None]:
            rec = {"id": rid if b is None else f"{rid}#{b}", "run": rid, "seed": None, "task": None, "epoch": None,
                   "hparams": {}, "metrics": {}, "file": rel, "spec_id": "spec-0"}
            _apply_row(rec, extra)
            j = len(records)
            records.append(rec)
            rec_files.append(f)
            rows.append(b)
            by_file.setdefault(rel, []).append(j)
            for key in {rec["id"], rid, f.stem}:  # an id column may name the stem or the relative path
                by_id.setdefault(key, []).append(j)
    table = Path(metadata) if metadata is not None else _find_table(path)
    table_rows = read_table(table) if table is not None else []
    if metadata is None and not any("file" in r or "id" in r for r in table_rows):
        table, table_rows = None, []  # an unrelated JSON/CSV file (e.g. a config), not an index
    if table is not None:
        for i, row in enumerate(table_rows):
            if row.get("file") not in (None, ""):
                key = str(row["file"])
                idx = by_file.get(key) or by_file.get(Path(key).as_posix())
                if not idx:
                    raise WeightSpaceError(f"metadata row {i + 1} names a checkpoint that does not exist "
                                           f"(listed in '{table}')", file=root / key)
            elif row.get("id") not in (None, ""):
                key = str(row["id"])
                idx = by_id.get(key)
                if not idx:
                    raise WeightSpaceError(f"metadata row {i + 1}: no checkpoint with id '{key}' "
                                           f"(listed in '{table}')", file=root / key)
            else:
                raise WeightSpaceError(f"row {i + 1} has neither a 'file' nor an 'id' column", file=table)
            for j in idx:
                _apply_row(records[j], row)
    meta = {"source_format": NAME}
    if table is not None:
        meta["metadata_table"] = str(table)
    return FileSource(root, {"spec-0": spec}, records, rec_files, meta=meta, file_rows=rows, origin=origin, fmt=NAME)
