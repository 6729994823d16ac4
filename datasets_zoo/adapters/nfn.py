"""NFN SIREN datasets (Zhou et al., NeurIPS 2023): ``<prefix>_<digit>s/net<idx>.pth``.

Layout (``AllanYangZhou/nfn``, ``siren_{mnist,fashion,cifar}_wts``)::

    <root>/randinit_smaller_0s/net0.pth ...      label = the digit before "s"
    <root>/randinit_smaller_aug3_7s/net12.pth    augmented views (other prefixes)

State_dicts of ``experiments/siren_utils.Siren``: ``net.0.linear.{weight,bias}``,
``net.1.linear...``, ``net.2.{weight,bias}`` (outermost linear), ``sin(30 x)`` after
every hidden layer (``first_omega_0 = hidden_omega_0 = 30``). The spec is inferred from
the first file (SIREN, ``w0=30``; override ``w0=`` / ``activation=`` / ``spec=``).

Records: ``id`` = relative path, ``image`` = ``idx`` (the same image across augmented
prefixes), ``label``, ``view`` = the prefix, and ``split`` from the index as upstream:
``idx < split_points[0]`` train, ``< split_points[1]`` val, else test (defaults
45,000 / 50,000; Fashion-MNIST used 55,000 / 60,000). ``prefix="randinit_smaller"``
(default) reads the base views only; ``prefix=None`` reads every prefix.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from wspace.errors import WeightSpaceError
from wspace.spec import WeightSpaceSpec

from .support import FileSource, infer_mlp_spec, relative_id, state_dict_layout

NAME = "nfn"
_DIR_RE = re.compile(r"^(?P<prefix>.+)_(?P<label>\d+)s$")
_NET_RE = re.compile(r"^net(?P<idx>\d+)\.pth$")


def detect(path: Path) -> bool:
    for d in list(path.iterdir())[:200]:
        if d.is_dir() and _DIR_RE.match(d.name) and any(_NET_RE.match(f.name) for f in d.iterdir()):
            return True
    return False


def open_source(path: Path, *, prefix: str | None = "randinit_smaller",
                split_points: tuple[int, int] = (45_000, 50_000), spec: WeightSpaceSpec | None = None,
                activation: str = "sine", w0: float | Sequence[float] = 30.0) -> FileSource:
    """Read an NFN SIREN folder (see the module docstring)."""
    found = []
    for d in sorted(path.iterdir()):
        m = _DIR_RE.match(d.name) if d.is_dir() else None
        if m is None or (prefix is not None and m["prefix"] != prefix):
            continue
        for f in d.iterdir():
            n = _NET_RE.match(f.name)
            if n:
                found.append((int(n["idx"]), m["prefix"], int(m["label"]), f))
    if not found:
        want = f"'{prefix}_<digit>s/net<idx>.pth'" if prefix else "'<prefix>_<digit>s/net<idx>.pth'"
        raise WeightSpaceError(f"no {want} files found", file=path)
    found.sort(key=lambda t: (t[0], t[1]))
    lo, hi = split_points
    records, files = [], []
    for idx, pre, label, f in found:
        split = "train" if idx < lo else ("val" if idx < hi else "test")
        records.append({"id": relative_id(f, path), "run": relative_id(f, path), "image": idx, "view": pre,
                        "seed": None, "task": path.name, "epoch": None, "label": label, "split": split,
                        "hparams": {}, "metrics": {}, "spec_id": "spec-0"})
        files.append(f)
    if spec is None:
        spec = infer_mlp_spec(state_dict_layout(files[0]), activation=activation, w0=w0, file=files[0])
    meta = {"source_format": NAME, "activation": activation, "w0": w0, "split_points": list(split_points)}
    return FileSource(path, {"spec-0": spec}, records, files, meta=meta, origin=files[0], fmt=NAME)
