"""``ZooDataset``: a zoo as a PyTorch dataset of networks, with leak-free splits.

* **Splits never leak.** Checkpoints are split by *group*: all epochs of one training
  run (``split_by="run"``), all INRs of one image (``"image"``), all models of one task
  (``"task"``), or any record field. Groups are shuffled with ``seed`` and cut by
  ``fractions``; the same arguments always give the same partition. A predefined split
  (a ``split`` field, as in the DWSNets / NFN releases) is used with ``"split"``, which
  ``split_by="auto"`` (the default) picks when every record has one; otherwise
  ``auto`` means ``run``.
* **Statistics from train only.** ``dataset.stats`` is the mean / std of every
  parameter tensor (one scalar each, as in DWSNets / NFN) over the *train* split of the
  same partition, whatever the dataset's own split; ``normalize=True`` applies it.
* **Items**: ``representation="dense"`` gives ``(WeightSpace with B=1, target)``; a
  ``DataLoader`` with :func:`collate_dense` (or ``dataset.loader(...)``) gives
  ``(WeightSpace with B=batch, target [batch])``. ``representation="graph"`` gives PyG
  ``Data`` (``wspace.graph.to_graph``) with ``y``; use ``torch_geometric.loader.DataLoader``.
* **Batched reads.** ``dataset.loader(...)`` (dense) samples batches of indices and reads
  each with one ``zoo.weights(indices)`` call straight into the batch (``dataset.batch``);
  a plain ``DataLoader`` with :func:`collate_dense` also reads once per batch (through
  ``__getitems__``) but then splits and re-stacks it. Transforms receive the whole batch
  as one ``WeightSpace``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from wspace.collate import collate_dense
from wspace.errors import WeightSpaceError
from wspace.standardize import WeightStats
from wspace.space import WeightSpace

from .source import record_value

__all__ = ["ZooDataset", "WeightStats", "collate_dense", "assign_splits"]

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"training": "train", "train": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}
_MISSING = object()


# --------------------------------------------------------------------------- statistics
# --------------------------------------------------------------------------- splits
def assign_splits(records: Sequence[dict], split_by: str = "auto", seed: int = 0,
                  fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[np.ndarray, str, np.ndarray]:
    """Split name per record, the resolved ``split_by`` and the group key per record.

    Groups (distinct values of ``split_by``) are sorted, permuted with ``seed`` and cut
    into train / val / test by ``fractions``; every record follows its group, so the
    epochs of one run (or the views of one image) never straddle two splits.
    """
    n = len(records)
    if split_by == "auto":
        if n and all(r.get("split") is not None for r in records):
            split_by = "split"
        elif n and all(r.get("run") is not None for r in records):
            split_by = "run"
        else:
            split_by = "id"
    keys = []
    for r in records:
        v = record_value(r, split_by, _MISSING)
        if v is _MISSING or v is None:
            raise WeightSpaceError(f"checkpoint '{r.get('id')}' has no '{split_by}' to split by")
        keys.append(v)
    if split_by == "split":
        names = np.array([_SPLIT_ALIASES.get(str(k).lower(), str(k)) for k in keys], dtype=object)
        return names, split_by, np.array(keys, dtype=object)
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise WeightSpaceError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    str_keys = np.array([repr(k) for k in keys], dtype=object)
    groups, inverse = np.unique(str_keys, return_inverse=True)
    G = len(groups)
    counts = np.floor(np.array(fr) * G).astype(int)
    rema = np.array(fr) * G - counts
    for i in np.argsort(-rema, kind="stable")[: G - counts.sum()]:
        counts[i] += 1
    for i in range(3):  # a requested split gets a group when there are enough groups
        if fr[i] > 0 and counts[i] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    perm = np.random.default_rng(seed).permutation(G)
    group_split = np.empty(G, dtype=object)
    bounds = np.cumsum(counts)
    group_split[perm[: bounds[0]]] = "train"
    group_split[perm[bounds[0]: bounds[1]]] = "val"
    group_split[perm[bounds[1]:]] = "test"
    return group_split[inverse], split_by, str_keys


# --------------------------------------------------------------------------- targets
def _targets(records: Sequence[dict], target: Any) -> tuple[torch.Tensor | None, list | None]:
    if target is None:
        return None, None
    if callable(target):
        vals = [target(dict(r)) for r in records]
        kind = "callable"
    else:
        name = str(target)
        if name in ("class", "label"):
            vals = [record_value(r, "label", record_value(r, "class", _MISSING)) for r in records]
            kind = "class"
        else:
            vals = [record_value(r, name, _MISSING) for r in records]
            kind = "value"
        for r, v in zip(records, vals):
            if v is _MISSING or v is None:
                raise WeightSpaceError(f"checkpoint '{r.get('id')}' has no target '{name}'")
    classes = None
    if kind == "class":
        if any(isinstance(v, str) for v in vals):
            classes = sorted({str(v) for v in vals})
            lookup = {c: i for i, c in enumerate(classes)}
            return torch.tensor([lookup[str(v)] for v in vals], dtype=torch.long), classes
        return torch.tensor([int(v) for v in vals], dtype=torch.long), None
    if kind == "value":
        try:
            return torch.tensor([float(v) for v in vals], dtype=torch.float32), None
        except (TypeError, ValueError) as e:
            raise WeightSpaceError(f"target '{target}' is not numeric ({e}); use target='class' for labels") from e
    t = torch.as_tensor(np.asarray(vals))
    return (t.float() if t.is_floating_point() else t), None


# --------------------------------------------------------------------------- dataset
class ZooDataset(Dataset):
    """Networks of a zoo split, with targets (see the module docstring).

    Args:
        zoo: a :class:`~datasets_zoo.Zoo` (view) holding one architecture.
        split: ``"train"``, ``"val"`` or ``"test"`` (or a predefined split's name).
        target: a record field (``"test_acc"``; looked up in the record, ``metrics``,
            ``hparams``), ``"class"`` (the ``label`` field, as int64; string labels are
            mapped to ``dataset.classes``), a callable ``record -> value``, or ``None``.
        representation: ``"dense"`` (WeightSpace items) or ``"graph"`` (PyG ``Data``).
        transform: ``WeightSpace -> WeightSpace`` applied to each fetched batch after
            normalization (augmentations: they must act per network).
        split_by: ``"auto"``, ``"split"`` (predefined), ``"run"``, ``"image"``, ``"task"``,
            ``"id"`` or any record field.
        seed, fractions: the partition of groups into train / val / test.
        normalize: apply the train statistics to every item.
        stats: precomputed :class:`WeightStats`, or another ``ZooDataset`` whose stats to
            share (``Zoo.splits`` does this); default: computed from this partition's train split.
        dtype: floating dtype of the returned weights.
    """

    def __init__(self, zoo, split: str = "train", target: str | Callable[[dict], Any] | None = None,
                 representation: str = "dense", transform: Callable[[WeightSpace], WeightSpace] | None = None,
                 split_by: str = "auto", seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 normalize: bool = False, stats: "WeightStats | ZooDataset | None" = None,
                 dtype: torch.dtype = torch.float32):
        if representation not in ("dense", "graph"):
            raise WeightSpaceError(f"representation must be 'dense' or 'graph', got '{representation}'")
        self.zoo = zoo
        self.spec = zoo.spec  # raises, naming the specs, if the zoo mixes architectures
        records = zoo.records
        assignment, self.split_by, group_keys = assign_splits(records, split_by, seed, fractions)
        if self.split_by != "split" and split not in SPLITS:
            raise WeightSpaceError(f"split must be one of {SPLITS}, got '{split}'")
        self.split = _SPLIT_ALIASES.get(split, split)
        self.assignment = assignment
        self.indices = np.flatnonzero(assignment == self.split).astype(np.int64)
        self.train_indices = np.flatnonzero(assignment == "train").astype(np.int64)
        self.groups = group_keys[self.indices]
        all_targets, self.classes = _targets(records, target)
        self.targets = None if all_targets is None else all_targets[torch.from_numpy(self.indices)]
        self.target = target
        self.representation = representation
        self.transform = transform
        self.normalize = normalize
        self.dtype = dtype
        self._stats = stats if isinstance(stats, WeightStats) else None
        self._stats_from = stats if isinstance(stats, ZooDataset) else None
        if normalize:
            _ = self.stats  # compute now: DataLoader workers must not each recompute it
        if representation == "graph":
            try:
                from wspace.graph import to_graph  # noqa: F401
            except ImportError as e:  # pragma: no cover - graph module is part of the core
                raise WeightSpaceError(f"representation='graph' needs wspace.graph: {e}") from e

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (f"ZooDataset(split={self.split!r}, {len(self)} networks, split_by={self.split_by!r}, "
                f"target={self.target!r}, representation={self.representation!r})")

    @property
    def records(self) -> list[dict]:
        """The records of this split's networks, in dataset order."""
        return self.zoo.select(self.indices).records

    def record_values(self, name: str | Callable[[dict], Any]) -> torch.Tensor:
        """A recorded metric (e.g. ``"train_acc"``) of this split's networks, in dataset
        order, read by the same rules as ``target`` (a record key, or a callable on the
        record); raises naming the checkpoint that lacks it."""
        values, _ = _targets(self.records, name)
        return values

    @property
    def stats(self) -> WeightStats:
        """Per-tensor mean/std over the *train* split of this partition (computed once)."""
        if self._stats is None:
            if self._stats_from is not None:
                self._stats = self._stats_from.stats
            else:
                self._stats = WeightStats.compute(self.zoo, self.train_indices)
        return self._stats

    # ------------------------------------------------------------------- items
    def weights(self, idxs: Sequence[int] | np.ndarray) -> WeightSpace:
        """The (normalized, transformed) networks at dataset positions ``idxs`` as one batch."""
        pos = np.asarray(idxs, dtype=np.int64).reshape(-1)
        ws = self.zoo.weights(self.indices[pos])
        if ws.dtype != self.dtype:
            ws = ws.to(self.dtype)
        if self.normalize:
            ws = self.stats.normalize(ws)
        if self.transform is not None:
            ws = self.transform(ws)
        return ws

    def batch(self, idxs: Sequence[int] | np.ndarray) -> tuple[WeightSpace, torch.Tensor | None]:
        """``(WeightSpace with B = len(idxs), targets [B] or None)``: one batched zoo read,
        no per-network objects (what ``loader`` yields for dense datasets)."""
        pos = np.asarray(idxs, dtype=np.int64).reshape(-1)
        if pos.size == 0:
            raise WeightSpaceError("empty batch")
        ws = self.weights(pos)
        return ws, None if self.targets is None else self.targets[torch.from_numpy(pos)]

    def __getitems__(self, idxs: Sequence[int]) -> list:
        """A list of items read with one batched zoo read (used by ``DataLoader``)."""
        idxs = list(idxs)
        if not idxs:
            return []
        ws = self.weights(idxs)
        ys = None if self.targets is None else self.targets[torch.as_tensor(idxs, dtype=torch.long)]
        if self.representation == "graph":
            from wspace.graph import to_graph

            data = to_graph(ws).to_data_list()
            if ys is not None:
                for d, y in zip(data, ys):
                    d.y = y.reshape(1, -1) if y.dim() else y.reshape(1)
            return data
        return [(ws[j], None if ys is None else ys[j]) for j in range(len(idxs))]

    def __getitem__(self, i: int):
        if not -len(self) <= int(i) < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} networks")
        return self.__getitems__([int(i) % len(self)])[0]

    def loader(self, batch_size: int = 32, shuffle: bool | None = None, **kwargs: Any) -> DataLoader:
        """A ``DataLoader`` over this dataset.

        Dense: a batch sampler hands each batch's indices to :meth:`batch`, so a batch is
        one zoo read straight into ``(WeightSpace [batch], targets [batch])``, shuffled or
        not (no per-network items, no collation copy). Graph: PyG's loader. ``shuffle``
        defaults to True for the train split; ``drop_last``, ``generator``, ``sampler``
        and the other ``DataLoader`` arguments (``num_workers``, ...) are passed on.
        """
        shuffle = self.split == "train" if shuffle is None else shuffle
        if self.representation == "graph":
            from torch_geometric.loader import DataLoader as GraphLoader

            return GraphLoader(self, batch_size=batch_size, shuffle=shuffle, **kwargs)
        sampler = kwargs.pop("sampler", None)
        generator = kwargs.pop("generator", None)
        if sampler is None:
            sampler = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        batches = BatchSampler(sampler, batch_size, drop_last=kwargs.pop("drop_last", False))
        return DataLoader(_DenseBatches(self), sampler=batches, batch_size=None, collate_fn=_as_is,
                          generator=generator, **kwargs)


class _DenseBatches(Dataset):
    """``ds.batch(indices)`` as a map-style dataset keyed by index lists (for a batch sampler)."""

    def __init__(self, ds: ZooDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idxs: Sequence[int]) -> tuple[WeightSpace, torch.Tensor | None]:
        return self.ds.batch(idxs)


def _as_is(batch: Any) -> Any:  # module level, so that worker processes can pickle it
    return batch
