"""DWSNets INR datasets (Navon et al., ICML 2023): one ``.pth`` SIREN state_dict per image.

Layout (``AvivNavon/DWSNets``)::

    <root>/mnist_png_<training|testing>_<label>_<idx>/**/<name>.pth   keys seq.{0,1,2}.{weight,bias}
    <root>/*split*.json   {"train"|"val"|"test": {"path": [...], "label": [...]}}

and the augmentation-paper variant: ``{"train": [paths]}`` with the class stored in each
``.pth`` under ``"label"`` (dropped when reading weights; the label then comes from the
folder name). Paths in the splits file were absolute on the authors' machines: each is
used as is if it exists, else re-rooted under ``<root>`` by its longest existing
suffix. Without a splits file, every ``.pth`` below ``<root>`` is read.

Architecture (default): SIREN, ``Linear -> sin(30 x) -> ... -> Linear``, inferred from
the first file's keys/shapes (2 -> 32 -> 32 -> 1 for MNIST). Override with
``activation=`` / ``w0=`` or ``spec=``. The upstream ``INR.forward`` adds ``0.5`` to
the output; the spec evaluates ``seq(x)`` and ``zoo.meta["output_offset"] = 0.5``
records the constant.

Records: ``id`` = path relative to the root, ``run`` / ``image`` = the image folder,
``label`` (int), ``split`` (from the splits file), ``subset`` (training/testing).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from wspace.errors import WeightSpaceError
from wspace.spec import WeightSpaceSpec

from .support import FileSource, infer_mlp_spec, relative_id, state_dict_layout

NAME = "dwsnets"
_IMAGE_RE = re.compile(r"^(?P<prefix>.*?)_(?P<subset>training|testing|train|test)_(?P<label>\d+)_(?P<idx>\d+)$")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}


def _splits_files(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("*.json") if "split" in p.name.lower())


def detect(path: Path) -> bool:
    for f in _splits_files(path):
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and any(k in doc for k in ("train", "test")):
            return True
    return any(_IMAGE_RE.match(p.name) for p in list(path.iterdir())[:200] if p.is_dir())


def _resolve(p: str, root: Path, anchor: Path) -> Path | None:
    cand = Path(p)
    if cand.is_absolute() and cand.is_file():
        return cand
    if (anchor / cand).is_file():
        return anchor / cand
    parts = cand.parts
    for k in range(len(parts)):  # re-root by the longest suffix that exists under root
        c = root.joinpath(*parts[k:])
        if c.is_file():
            return c
    return None


def _image_of(f: Path, root: Path) -> tuple[str, dict]:
    """The image folder of an INR file (``mnist_png_training_2_23``) and what its name says."""
    p = f.parent
    while True:
        m = _IMAGE_RE.match(p.name)
        if m:
            return p.name, {"label": int(m["label"]), "subset": m["subset"]}
        if p == root or p.parent == p:
            return relative_id(f, root), {}
        p = p.parent


def open_source(path: Path, *, splits: str | Path | None = None, spec: WeightSpaceSpec | None = None,
                activation: str = "sine", w0: float | Sequence[float] = 30.0) -> FileSource:
    """Read a DWSNets INR folder (see the module docstring)."""
    if splits is None:
        found = _splits_files(path)
        if len(found) > 1:
            raise WeightSpaceError(f"several splits files {[f.name for f in found]}; pass splits=", file=path)
        splits = found[0] if found else None
    entries: list[tuple[Path, str | None, Any]] = []  # file, split, label
    if splits is not None:
        splits = Path(splits)
        try:
            doc = json.loads(splits.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise WeightSpaceError(f"cannot read the splits file: {e}", file=splits) from e
        if not isinstance(doc, dict):
            raise WeightSpaceError("expected {split: {path: [...], label: [...]}} or {split: [paths]}", file=splits)
        for split, block in doc.items():
            if isinstance(block, dict):
                paths, labels = block.get("path", []), block.get("label")
                if labels is not None and len(labels) != len(paths):
                    raise WeightSpaceError(f"split '{split}': {len(paths)} paths but {len(labels)} labels", file=splits)
            elif isinstance(block, list):
                paths, labels = block, None
            else:
                raise WeightSpaceError(f"split '{split}' is neither a list nor {{path, label}}", file=splits)
            for i, p in enumerate(paths):
                f = _resolve(str(p), path, splits.parent)
                if f is None:
                    raise WeightSpaceError(f"split '{split}' lists a checkpoint that does not exist under '{path}'",
                                           file=p)
                entries.append((f, _SPLIT_NAMES.get(str(split).lower(), str(split)),
                                None if labels is None else labels[i]))
    else:
        files = sorted(p for p in path.rglob("*.pth") if p.name != "statistics.pth")
        entries = [(f, None, None) for f in files]
    if not entries:
        raise WeightSpaceError("no INR checkpoint (.pth) found", file=path)
    records, files = [], []
    seen: set[str] = set()
    for f, split, label in entries:
        rid = relative_id(f, path)
        if rid in seen:
            raise WeightSpaceError(f"checkpoint '{rid}' is listed twice", file=splits or path)
        seen.add(rid)
        image, info = _image_of(f, path)
        if label is None:
            label = info.get("label")
        rec = {"id": rid, "run": image, "image": image, "seed": None, "task": path.name, "epoch": None,
               "label": None if label is None else int(label), "hparams": {}, "metrics": {}, "spec_id": "spec-0"}
        if split is not None:
            rec["split"] = split
        if "subset" in info:
            rec["subset"] = info["subset"]
        records.append(rec)
        files.append(f)
    if spec is None:
        spec = infer_mlp_spec(state_dict_layout(files[0]), activation=activation, w0=w0, ignore=("label",),
                              file=files[0])
    meta = {"source_format": NAME, "output_offset": 0.5, "activation": activation, "w0": w0}
    return FileSource(path, {"spec-0": spec}, records, files, meta=meta, ignore_keys=("label",), origin=files[0],
                      fmt=NAME)
