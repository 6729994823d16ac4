"""``Zoo``: a population of checkpoints on disk, read lazily, filtered as views.

``Zoo.open(path)`` detects the format (native or a public one, see
:mod:`datasets_zoo.adapters`) and reads only the descriptions: no weights are loaded
until :meth:`Zoo.weights` asks for some rows, and then only those rows are read (a
slice of a memory map for native and Small CNN Zoo data; one file per checkpoint for
the per-file formats).

Example::

    zoo = Zoo.open("zoos/digits-mlp")
    best = zoo.filter(task="digits", epoch=20, test_acc=(0.9, 1.0))
    ws = best.weights(range(64))            # WeightSpace with B = 64
    train = best.dataset(split="train", target="test_acc")

A zoo of several architectures (e.g. ``digits-tasks-multi``) lists them in
:attr:`Zoo.architectures` (name -> checkpoints); :meth:`Zoo.architecture` is the view
on one of them (``zoo.architecture("cnn-8-16").weights()``).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

from .adapters import open_source
from .source import ZooSource, record_value

__all__ = ["Zoo"]

_MISSING = object()


def _as_indices(indices: Any, n: int) -> np.ndarray:
    """Positions ``[k]`` (int64) from an int, slice, range, sequence, bool mask, array or tensor."""
    if isinstance(indices, np.ndarray) and indices.dtype == np.int64 and indices.ndim == 1 and indices.size:
        lo, hi = int(indices.min()), int(indices.max())  # the batch fast path: no conversion
        if lo < -n or hi >= n:
            raise IndexError(f"index out of range for a zoo of {n} checkpoints")
        return indices if lo >= 0 else np.where(indices < 0, indices + n, indices)
    if indices is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(indices, slice):
        return np.arange(n, dtype=np.int64)[indices]
    if isinstance(indices, (int, np.integer)):
        indices = [int(indices)]
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = indices if isinstance(indices, np.ndarray) else np.asarray(list(indices))
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean mask of shape {arr.shape} for a zoo of {n} checkpoints")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64).reshape(-1)
    if arr.min() < -n or arr.max() >= n:
        raise IndexError(f"index out of range for a zoo of {n} checkpoints")
    return np.where(arr < 0, arr + n, arr)


def _matches(value: Any, cond: Any) -> bool:
    if callable(cond):
        return bool(cond(value))
    if isinstance(cond, tuple) and len(cond) == 2 and all(c is None or isinstance(c, (int, float)) for c in cond) \
            and not all(c is None for c in cond):
        lo, hi = cond  # inclusive range; None = open end
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            return False
        return (lo is None or value >= lo) and (hi is None or value <= hi)
    if isinstance(cond, (list, set, frozenset, tuple)):
        return value in cond
    return value == cond


class Zoo:
    """A view on an opened zoo: ``len(zoo)`` checkpoints, their ``records`` and, on request,
    their ``weights``. :meth:`filter` and :meth:`select` return new views sharing the
    same open source (no copy, no read)."""

    def __init__(self, source: ZooSource, index: np.ndarray | None = None):
        self._source = source
        self._index = np.arange(len(source.records), dtype=np.int64) if index is None else np.asarray(index, np.int64)

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | os.PathLike, format: str | None = None, **options: Any) -> "Zoo":
        """Open the zoo at ``path``.

        Args:
            path: a native zoo directory or a public-format folder / file.
            format: force a format (``native``, ``small_cnn_zoo``, ``model_zoos``, ``nfn``,
                ``dwsnets``, ``plain``) instead of detecting it.
            **options: reader options, e.g. ``spec=`` (use this architecture),
                ``activation=`` / ``w0=`` (for inferred MLPs / SIRENs), ``splits=``
                (DWSNets splits json), ``prefix=`` / ``split_points=`` (NFN),
                ``metadata=`` (plain folder table).
        """
        return cls(open_source(path, format=format, **options))

    # ------------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        ids = self.spec_ids
        return f"Zoo({str(self.path)!r}, format={self.format}, {len(self)} checkpoints, specs={ids})"

    @property
    def path(self):
        return self._source.path

    @property
    def format(self) -> str:
        """The on-disk format this zoo was read from."""
        return self._source.format

    @property
    def source(self) -> ZooSource:
        return self._source

    @property
    def meta(self) -> dict:
        """Free metadata stored with the zoo (native: ``zoo.json``'s ``meta``)."""
        return dict(self._source.meta)

    @property
    def tasks(self) -> dict:
        """Task definitions stored with the zoo (``meta["tasks"]``; empty if none)."""
        return dict(self._source.meta.get("tasks", {}) or {})

    @property
    def spec_ids(self) -> list[str]:
        """Ids of the architectures present in this view, in zoo order."""
        codes = np.unique(self._source.spec_codes[self._index])
        return [self._source.spec_ids[c] for c in codes]

    def most_common_spec_id(self) -> str | None:
        """The architecture with the most checkpoints in this view (ties: the first in zoo
        order; ``None`` for an empty view). Used wherever one architecture must be picked."""
        counts = np.bincount(self._source.spec_codes[self._index], minlength=len(self._source.spec_ids))
        return self._source.spec_ids[int(np.argmax(counts))] if counts.sum() else None

    @property
    def architectures(self) -> dict[str, int]:
        """Architecture name -> number of checkpoints in this view, in zoo order. The name is
        a record's ``architecture`` field (multi-architecture builder presets such as
        ``digits-tasks-multi``), else its ``spec_id``."""
        src, codes = self._source.records, self._source.spec_codes
        out: dict[str, int] = {}
        for i in self._index.tolist():
            name = src[i].get("architecture")
            name = self._source.spec_ids[int(codes[i])] if name is None else str(name)
            out[name] = out.get(name, 0) + 1
        return out

    def describe_architectures(self) -> str:
        """``'name' (spec description; N checkpoints), ...`` for the architectures of this view
        (for messages that ask the user to pick one)."""
        parts = []
        for name, n in self.architectures.items():
            view = self.architecture(name)
            desc = "; ".join(self._source.specs[s].describe() for s in view.spec_ids)
            parts.append(f"'{name}' ({desc}; {n} checkpoints)")
        return ", ".join(parts)

    def architecture(self, name: str) -> "Zoo":
        """A view on one architecture: ``name`` is a record's ``architecture`` (see
        :attr:`architectures`), a ``spec_id`` or a spec's ``describe()`` string.

        Raises:
            WeightSpaceError: no checkpoint of this view matches (naming the architectures it has).
        """
        src, codes, ids = self._source.records, self._source.spec_codes, self._source.spec_ids
        described = {sid: self._source.specs[sid].describe() for sid in self.spec_ids}
        keep = []
        for i in self._index.tolist():
            sid = ids[int(codes[i])]
            if src[i].get("architecture") == name or sid == name or described.get(sid) == name:
                keep.append(i)
        if not keep:
            raise WeightSpaceError(f"the zoo has no architecture '{name}'; it has: {self.describe_architectures()} "
                                   "(name one by its architecture name, spec id or spec description)", file=self.path)
        return Zoo(self._source, np.asarray(keep, dtype=np.int64))

    @property
    def specs(self) -> dict[str, WeightSpaceSpec]:
        """The architectures present in this view (id -> spec)."""
        return {s: self._source.specs[s] for s in self.spec_ids}

    @property
    def spec(self) -> WeightSpaceSpec:
        """The one architecture of this view; raises if it mixes several (naming them)."""
        specs = self.specs
        if len(specs) == 1:
            return next(iter(specs.values()))
        if not specs:
            raise WeightSpaceError("the zoo view is empty: no architecture", file=self.path)
        codes = self._source.spec_codes[self._index]
        parts = [f"'{sid}' ({s.describe()}; {int((codes == self._source.spec_ids.index(sid)).sum())} checkpoints)"
                 for sid, s in specs.items()]
        first = next(iter(self.architectures))
        raise WeightSpaceError(
            f"the zoo mixes {len(specs)} architectures: {', '.join(parts)}; select one with "
            f"zoo.architecture('{first}') or zoo.filter(spec_id='{next(iter(specs))}')", file=self.path)

    @property
    def records(self) -> list[dict]:
        """One dict per checkpoint (``id``, ``run``, ``seed``, ``task``, ``epoch``, ``hparams``,
        ``metrics``, ``spec_id`` and format-specific fields), copies."""
        src = self._source.records
        return [dict(src[i]) for i in self._index.tolist()]

    def record(self, i: int) -> dict:
        """The record of checkpoint ``i`` (a copy)."""
        pos = _as_indices(i, len(self))[0]
        return dict(self._source.records[int(self._index[pos])])

    def column(self, name: str, default: Any = _MISSING) -> np.ndarray:
        """Per checkpoint, ``record[name]`` or ``metrics[name]`` or ``hparams[name]``.

        Numbers give a float/int array; other values an object array. A checkpoint
        without the field raises unless ``default`` is given.
        """
        src = self._source.records
        out = []
        for i in self._index.tolist():
            v = record_value(src[i], name, _MISSING)
            if v is _MISSING:
                if default is _MISSING:
                    raise WeightSpaceError(f"checkpoint '{src[i].get('id')}' has no field '{name}'", file=self.path)
                v = default
            out.append(v)
        arr = np.asarray(out) if out else np.zeros(0)
        if arr.dtype.kind in "USb" or arr.ndim != 1:
            arr = np.empty(len(out), dtype=object)
            arr[:] = out
        return arr

    # --------------------------------------------------------------- selection
    def select(self, indices: Any) -> "Zoo":
        """A view on some checkpoints (ints, slice, bool mask; positions in this view)."""
        return Zoo(self._source, self._index[_as_indices(indices, len(self))])

    def __getitem__(self, indices: Any) -> "Zoo":
        return self.select(indices)

    def filter(self, where: Callable[[dict], bool] | None = None, **conditions: Any) -> "Zoo":
        """A view on the checkpoints whose records match every condition.

        Each keyword names a field (looked up in the record, then ``metrics``, then
        ``hparams``); its value is an exact value (``task="digits"``), a list/set of
        allowed values (``epoch=[0, 20]``), an inclusive numeric range
        (``test_acc=(0.5, 1.0)``, ``None`` for an open end) or a predicate. ``where``
        receives the whole record. A field that no record has raises (typo guard).
        """
        src = self._source.records
        idx = self._index.tolist()
        for name in conditions:
            if not any(record_value(src[i], name, _MISSING) is not _MISSING for i in idx) and idx:
                raise WeightSpaceError(f"no checkpoint has a field '{name}'; record fields: "
                                       f"{sorted(src[idx[0]])}, metrics: {sorted(src[idx[0]].get('metrics') or {})}, "
                                       f"hparams: {sorted(src[idx[0]].get('hparams') or {})}", file=self.path)
        keep = []
        for i in idx:
            r = src[i]
            ok = True
            for name, cond in conditions.items():
                v = record_value(r, name, _MISSING)
                if v is _MISSING or not _matches(v, cond):
                    ok = False
                    break
            if ok and where is not None:
                ok = bool(where(dict(r)))
            if ok:
                keep.append(i)
        return Zoo(self._source, np.asarray(keep, dtype=np.int64))

    # ------------------------------------------------------------------ weights
    def weights(self, indices: Any = None) -> WeightSpace:
        """The weights of some checkpoints (default: all) as one :class:`WeightSpace`.

        ``indices``: int, slice, range, sequence, numpy array, tensor or bool mask
        (positions in this view); the result keeps their order. All must share one
        architecture. Rows are read in groups (one gather per shard / matrix), never
        the whole zoo.
        """
        pos = _as_indices(indices, len(self))
        if pos.size == 0:
            raise WeightSpaceError("no checkpoint selected", file=self.path)
        rows = self._index[pos]
        codes = self._source.spec_codes[rows]
        if len(self._source.spec_ids) > 1 and (codes != codes[0]).any():
            names = sorted({self._source.spec_ids[c] for c in np.unique(codes)})
            raise WeightSpaceError(f"the selected checkpoints mix architectures {names}; select one spec_id",
                                   file=self.path)
        return self._source.read(rows)

    def __iter__(self):
        raise TypeError("iterate over zoo.records, or read weights with zoo.weights(indices)")

    # ----------------------------------------------------------------- datasets
    def dataset(self, split: str = "train", **kwargs: Any):
        """A :class:`~datasets_zoo.dataset.ZooDataset` over this view (see its docstring)."""
        from .dataset import ZooDataset

        return ZooDataset(self, split=split, **kwargs)

    def splits(self, **kwargs: Any) -> dict:
        """``{"train", "val", "test"}`` datasets sharing one partition and the train statistics."""
        from .dataset import ZooDataset

        train = ZooDataset(self, split="train", **kwargs)
        out = {"train": train}
        for s in ("val", "test"):
            out[s] = ZooDataset(self, split=s, stats=train, **kwargs)
        return out
