"""``ZooDataModule``: train / val / test splits of a zoo for Lightning.

One partition of the zoo (leak-free: see :mod:`datasets_zoo.dataset`), per-tensor
weight normalization with the *train* statistics, batched reads (one
``zoo.weights(indices)`` call per batch through ``ZooDataset.__getitems__``) and two
hooks for later augmentation work:

* ``transform``: ``WeightSpace -> WeightSpace``, applied to every *train* batch (after
  normalization); val / test batches are never transformed.
* ``collate``: ``(WeightSpace [B], targets [B] | None) -> batch``, applied to every
  *train* batch while a ``Trainer`` fits (Lightning's ``on_before_batch_transfer``),
  e.g. Mixup of networks and targets.

Batches come from :meth:`ZooDataset.loader`: a batch sampler hands each batch's indices
to one zoo read straight into ``(WeightSpace [B], targets [B])``.

Example::

    dm = ZooDataModule("zoos/digits-inr", target="class", batch_size=64)
    dm.spec, dm.num_classes, len(dm.train), len(dm.val), len(dm.test)
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from .dataset import WeightStats, ZooDataset
from .zoo import Zoo
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

__all__ = ["ZooDataModule", "open_zoo", "resolve_split_by"]


def open_zoo(zoo: "str | os.PathLike | Zoo") -> Zoo:
    """A :class:`Zoo` from a path (or the zoo itself); a missing or unreadable path raises
    :class:`WeightSpaceError` naming it."""
    if isinstance(zoo, Zoo):
        return zoo
    if zoo is None or str(zoo) in ("", "???"):
        raise WeightSpaceError("no zoo given: pass zoo=<directory of a zoo>")
    path = os.path.expanduser(str(zoo))
    if not os.path.exists(path):
        raise WeightSpaceError("no such zoo (the path does not exist)", file=path)
    try:
        return Zoo.open(path)
    except WeightSpaceError:
        raise
    except (OSError, ValueError, KeyError) as e:  # unreadable or not a zoo: one clean message
        raise WeightSpaceError(f"cannot open this zoo: {e}", file=path) from e


def resolve_split_by(records: Sequence[dict], split_by: str = "auto") -> str:
    """``auto``: the zoo's predefined split (``split`` on every record; the digits-inr
    zoo's is by source image), else by ``image`` (INR zoos: all views of an image
    together), else by training ``run`` (all epochs of a run together), else by ``id``."""
    if split_by != "auto":
        return split_by
    for key in ("split", "image", "run"):
        if records and all(r.get(key) is not None for r in records):
            return key
    return "id"


def _select_spec(zoo: Zoo, spec_id: str | None) -> tuple[Zoo, str | None]:
    """The view on one architecture: ``spec_id`` (a spec id, or an architecture name or spec
    description as :meth:`Zoo.architecture` takes), or the zoo's only one, or its most common one."""
    ids = zoo.spec_ids
    if spec_id is not None:
        if spec_id not in ids:
            view = zoo.architecture(spec_id)  # raises naming the zoo's architectures
            if len(view.spec_ids) != 1:
                raise WeightSpaceError(f"architecture '{spec_id}' spans several specs {view.spec_ids}; "
                                       "name one spec id", file=zoo.path)
            return view, view.spec_ids[0]
        return zoo.filter(spec_id=spec_id), spec_id
    if len(ids) <= 1:
        return zoo, (ids[0] if ids else None)
    best = zoo.most_common_spec_id()
    return zoo.filter(spec_id=best), best


class ZooDataModule(L.LightningDataModule):
    """Train / val / test :class:`~datasets_zoo.ZooDataset` s of one zoo, for Lightning.

    Args:
        zoo: a zoo directory (any format :meth:`Zoo.open` reads) or a :class:`Zoo` view.
        target: what to predict (``"class"``, a record field such as ``"test_acc"``, a
            callable ``record -> value``) or ``None`` (the task derives its own targets).
        batch_size: train batch size; ``eval_batch_size`` (default: the same) for val / test.
        num_workers: ``DataLoader`` workers (0: read in the main process).
        split_by: ``"auto"`` (see :func:`resolve_split_by`), ``"split"``, ``"image"``,
            ``"run"``, ``"task"``, ``"id"`` or any record field.
        split_seed / fractions: the partition of the groups (ignored for ``"split"``).
        normalize: per-tensor normalization with the train statistics (shared by all splits).
        filter: record conditions for :meth:`Zoo.filter` (e.g. ``{"epoch": [10, 20]}``).
        spec_id: which architecture of a mixed zoo; default: the only one, else the most
            common one (``self.spec_id`` tells which).
        transform: train-only batch augmentation ``WeightSpace -> WeightSpace``.
        collate: train batch hook ``(ws, targets) -> batch`` (applied during ``Trainer.fit``).

    Everything is built in the constructor (so that a task can be sized from
    ``spec`` / ``num_classes`` before ``Trainer.fit``); bad paths, empty splits and
    missing targets raise :class:`WeightSpaceError` there.
    """

    def __init__(
        self, zoo: "str | os.PathLike | Zoo", target: str | Callable[[dict], Any] | None = None, *,
        batch_size: int = 64, eval_batch_size: int | None = None, num_workers: int = 0, split_by: str = "auto",
        split_seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1), normalize: bool = True,
        filter: Mapping[str, Any] | None = None, spec_id: str | None = None,
        transform: Callable[[WeightSpace], WeightSpace] | None = None,
        collate: Callable[[tuple], Any] | None = None,
    ):
        super().__init__()
        if int(batch_size) < 1:
            raise WeightSpaceError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.transform, self.collate = transform, collate
        full = open_zoo(zoo)
        if filter:
            full = full.filter(**dict(filter))
            if len(full) == 0:
                raise WeightSpaceError(f"no checkpoint matches filter {dict(filter)}", file=full.path)
        self.zoo, self.spec_id = _select_spec(full, spec_id)
        self.split_by = resolve_split_by(self.zoo.records, split_by)
        kw = dict(target=target, representation="dense", split_by=self.split_by, seed=int(split_seed),
                  fractions=tuple(fractions), normalize=normalize)
        self.train = ZooDataset(self.zoo, split="train", transform=transform, **kw)
        self.val = ZooDataset(self.zoo, split="val", stats=self.train, **kw)
        self.test = ZooDataset(self.zoo, split="test", stats=self.train, **kw)
        empty = [name for name, ds in (("train", self.train), ("val", self.val), ("test", self.test)) if len(ds) == 0]
        if empty:
            raise WeightSpaceError(
                f"split(s) {', '.join(empty)} are empty (train/val/test = {len(self.train)}/{len(self.val)}/"
                f"{len(self.test)} networks, split by '{self.split_by}'); the zoo is too small or the split "
                f"has no such part", file=self.zoo.path)
        self.target = target

    # ----------------------------------------------------------------- facts
    @property
    def spec(self) -> WeightSpaceSpec:
        """The architecture of every network in the splits."""
        return self.zoo.spec

    @property
    def stats(self) -> WeightStats:
        """Per-tensor mean / std of the train split (used to normalize every split)."""
        return self.train.stats

    @property
    def num_classes(self) -> int:
        """Number of classes of a class target: the zoo task's class list when the zoo
        records one (a small zoo may not show every class), else ``max label + 1``."""
        if self.train.targets is None or self.train.targets.dtype != torch.long:
            raise WeightSpaceError(f"target {self.target!r} is not a class label")
        if self.train.classes is not None:
            return len(self.train.classes)
        tasks = self.zoo.tasks
        names = {r.get("task") for r in self.zoo.records}
        declared = [len(tasks[n]["classes"]) for n in names if n in tasks and tasks[n].get("classes")]
        seen = int(max(int(ds.targets.max()) for ds in (self.train, self.val, self.test))) + 1
        return max(declared + [seen])

    def target_stats(self) -> tuple[float, float]:
        """Mean and std of the train targets (std 1 if constant), for standardizing a regression."""
        t = self.train.targets
        if t is None or not t.is_floating_point():
            raise WeightSpaceError(f"target {self.target!r} is not a numeric value")
        mean, std = float(t.double().mean()), float(t.double().std(correction=0))
        return mean, (std if std > 1e-12 else 1.0)

    def __repr__(self) -> str:
        return (f"ZooDataModule({str(self.zoo.path)!r}, spec_id={self.spec_id!r}, split_by={self.split_by!r}, "
                f"train/val/test={len(self.train)}/{len(self.val)}/{len(self.test)}, target={self.target!r})")

    # ---------------------------------------------------------------- loaders
    def _loader(self, ds: ZooDataset, batch_size: int, shuffle: bool) -> DataLoader:
        return ds.loader(batch_size, shuffle=shuffle, num_workers=self.num_workers,
                         persistent_workers=self.num_workers > 0)

    def set_augmentation(self, transform: Callable[[WeightSpace], WeightSpace] | None = None,
                         collate: Callable[[tuple], Any] | None = None) -> "ZooDataModule":
        """Replace the train-only ``transform`` and ``collate`` hooks (see the module docstring)."""
        self.transform, self.collate = transform, collate
        self.train.transform = transform
        return self

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.eval_batch_size, False)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Apply the ``collate`` hook to train batches (never to val / test / sanity checks)."""
        trainer = self.trainer
        if self.collate is not None and trainer is not None and trainer.training:
            return self.collate(batch)
        return batch

    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def group_counts(self) -> dict[str, int]:
        """Distinct split groups (runs, images, ...) per split."""
        return {s: int(np.unique(ds.groups).size) for s, ds in (("train", self.train), ("val", self.val),
                                                                  ("test", self.test))}
