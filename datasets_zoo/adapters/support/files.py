"""Zoos stored one file per checkpoint: safe state_dict loading (also for files without an
extension), key/shape layouts, :class:`FileSource` and checkpoint ids from paths."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from wspace import io as wio
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

from ...source import ZooSource

__all__ = ["load_torch_file", "state_dict_layout", "FileSource", "relative_id"]


def load_torch_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` / ``.pt`` / ``.pth`` or an extension-less torch file
    (Model Zoos' ``checkpoints``), always with ``weights_only=True`` and finite-checked."""
    path = Path(path)
    if path.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        return wio.load_state_dict(path)
    if not path.exists():
        raise WeightSpaceError("file not found", file=path)
    # wspace.io.load_state_dict dispatches on the extension; these files have none.
    sd = wio.read_torch_state_dict(path)  # the same safe loader (weights_only=True)
    wio.check_finite(sd, path)
    return sd


def state_dict_layout(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...]]]:
    """``[(key, shape)]`` of a checkpoint in file order; safetensors: from the header only."""
    path = Path(path)
    if path.suffix == ".safetensors":
        info, _, _ = wio.read_safetensors_header(path)
        return [(k, tuple(v["shape"])) for k, v in info.items()]
    sd = load_torch_file(path)
    return [(k, tuple(v.shape)) for k, v in sd.items()]


class FileSource(ZooSource):
    """Checkpoints stored one file each (``files[i]`` for ``records[i]``), or several per file
    when ``file_rows[i]`` is set (stacked ``save_weight_space`` files).

    ``read`` opens each needed file once, validates its keys/shapes against the spec and
    stacks. ``ignore_keys`` are dropped from every state_dict (e.g. a stored ``label``).
    ``origin`` names the file the spec was inferred from, so a mismatch names both files.
    """

    def __init__(self, path, specs, records, files: Sequence[Path], *, meta: dict | None = None,
                 file_rows: Sequence[int | None] | None = None, ignore_keys: Iterable[str] = (),
                 origin: Path | None = None, fmt: str = "files"):
        super().__init__(path, specs, records, meta)
        self.files = [Path(f) for f in files]
        self.file_rows = list(file_rows) if file_rows is not None else [None] * len(self.files)
        self.ignore_keys = set(ignore_keys)
        self.origin = origin
        self.format = fmt

    def _load(self, f: Path, spec: WeightSpaceSpec, stacked: bool) -> list[torch.Tensor]:
        if stacked:
            ws = wio.load_weight_space(f)
            if ws.spec.keys != spec.keys or ws.spec.shapes != spec.shapes:
                raise WeightSpaceError(self._mismatch("stacked file holds a different architecture"), file=f)
            return list(ws.tensors)
        sd = load_torch_file(f)
        for k in self.ignore_keys:
            sd.pop(k, None)
        try:
            wio.validate_state_dict(sd, spec, f)
        except WeightSpaceError as e:
            raise WeightSpaceError(self._mismatch(e.problem), file=f, tensor=e.tensor) from e
        return [sd[k] for k in spec.keys]

    def _mismatch(self, problem: str) -> str:
        if self.origin is None:
            return problem
        return f"{problem} (the zoo's architecture was taken from '{self.origin}'; a zoo holds one architecture)"

    def read(self, rows: np.ndarray) -> WeightSpace:
        rows = np.asarray(rows, dtype=np.int64)
        spec = self.specs[self.spec_ids[int(self.spec_codes[rows[0]])]]
        cache: dict[Path, list[torch.Tensor]] = {}
        per_row: list[list[torch.Tensor]] = []
        for r in rows.tolist():
            f, b = self.files[r], self.file_rows[r]
            if f not in cache:
                cache[f] = self._load(f, spec, b is not None)
            ts = cache[f]
            per_row.append([t[b] for t in ts] if b is not None else ts)
        tensors = [torch.stack([pr[i] for pr in per_row]) for i in range(len(spec.params))]
        dtype = tensors[0].dtype if tensors[0].is_floating_point() else torch.float32
        return WeightSpace(spec, [t.to(dtype) for t in tensors])


def relative_id(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (posix), without the checkpoint extension."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = path
    s = rel.as_posix()
    return re.sub(r"\.(safetensors|pth|pt|bin|ckpt)$", "", s)
