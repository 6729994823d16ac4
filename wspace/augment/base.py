"""Composition, probabilities and random sources shared by every augmentation.

A transform is any callable ``t(ws) -> ws`` on a batch of networks (a
:class:`~wspace.WeightSpace` of ``B`` networks) that draws its randomness *per
network*. They plug into ``ZooDataset(transform=...)`` (called once per fetched batch).

Random sources: every transform takes ``generator``: ``None`` (torch's global RNG),
an ``int`` seed, or a ``torch.Generator``. A seeded transform owns its generator, so
successive calls draw fresh randomness (never the same noise twice) and a run is
reproducible. Inside ``DataLoader`` worker processes the generator is re-derived once
per worker from the seed and the worker's own seed (which the loader draws anew each
epoch), so workers and epochs never repeat each other's augmentations.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace

__all__ = ["Transform", "Compose", "RandomApply", "RandomChoice", "Denormalized", "Lambda", "select_networks",
           "make_generator"]

GeneratorLike = "torch.Generator | int | None"


def make_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """``int`` -> a new CPU generator seeded with it; a generator or ``None`` as is."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise WeightSpaceError(f"generator must be None, an int seed or a torch.Generator, got {generator!r}")
    return torch.Generator().manual_seed(int(generator))


class Transform:
    """Base class: holds the random source (see the module docstring).

    Subclasses implement :meth:`apply` and draw random numbers on the CPU with
    ``self.generator`` (then move them to ``ws.device``).
    """

    def __init__(self, generator: torch.Generator | int | None = None):
        self._generator = make_generator(generator)
        self._worker_key: tuple | None = None

    @property
    def generator(self) -> torch.Generator | None:
        g = self._generator
        if g is None:
            return None
        info = torch.utils.data.get_worker_info()
        if info is not None:
            # A worker holds a pickled copy of the generator: every worker (and every
            # epoch, with non-persistent workers) would replay the same stream.
            key = (info.id, info.seed)
            if self._worker_key != key:
                seed = (g.initial_seed() * 1_000_003 + info.seed) % (2**63 - 1)
                self._generator = g = torch.Generator().manual_seed(seed)
                self._worker_key = key
        return g

    def apply(self, ws: WeightSpace) -> WeightSpace:
        raise NotImplementedError

    def __call__(self, ws: WeightSpace) -> WeightSpace:
        if not isinstance(ws, WeightSpace):
            raise WeightSpaceError(f"{type(self).__name__} expects a WeightSpace, got {type(ws).__name__}")
        return self.apply(ws)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def select_networks(mask: torch.Tensor, a: WeightSpace, b: WeightSpace) -> WeightSpace:
    """Per network: ``a[i]`` where ``mask[i]`` else ``b[i]`` (``mask`` is ``BoolTensor[B]``)."""
    mask = mask.to(a.device)
    return WeightSpace(a.spec, [torch.where(mask.reshape(-1, *([1] * (ta.dim() - 1))), ta, tb)
                                for ta, tb in zip(a.tensors, b.tensors)])


class Compose(Transform):
    """Apply ``transforms`` in order."""

    def __init__(self, transforms: Sequence[Callable[[WeightSpace], WeightSpace]]):
        super().__init__(None)
        self.transforms = list(transforms)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        for t in self.transforms:
            ws = t(ws)
        return ws


class RandomApply(Transform):
    """Apply ``transform`` to each network independently with probability ``p``.

    The transform runs on the whole batch (vectorized) and each network keeps the
    transformed or the original version; networks are independent draws.
    """

    def __init__(self, transform: Callable[[WeightSpace], WeightSpace], p: float = 0.5,
                 generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if not 0.0 <= float(p) <= 1.0:
            raise WeightSpaceError(f"RandomApply probability must be in [0, 1], got {p}")
        self.transform = transform
        self.p = float(p)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        if self.p == 0.0:
            return ws
        if self.p == 1.0:
            return self.transform(ws)
        mask = torch.rand(len(ws), generator=self.generator) < self.p
        if not bool(mask.any()):
            return ws
        return select_networks(mask, self.transform(ws), ws)


class RandomChoice(Transform):
    """Apply one of ``transforms`` per network, chosen with ``weights`` (uniform by default).

    Every transform runs on the whole batch; each network keeps its chosen result.
    """

    def __init__(self, transforms: Sequence[Callable[[WeightSpace], WeightSpace]],
                 weights: Sequence[float] | None = None, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        self.transforms = list(transforms)
        if not self.transforms:
            raise WeightSpaceError("RandomChoice needs at least one transform")
        w = torch.ones(len(self.transforms)) if weights is None else torch.as_tensor(weights, dtype=torch.float)
        if w.shape != (len(self.transforms),) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise WeightSpaceError(f"RandomChoice weights must be {len(self.transforms)} non-negative numbers")
        self.weights = w / w.sum()

    def apply(self, ws: WeightSpace) -> WeightSpace:
        choice = torch.multinomial(self.weights, len(ws), replacement=True, generator=self.generator)
        out = ws
        for k, t in enumerate(self.transforms):
            mask = choice == k
            if bool(mask.any()):
                out = select_networks(mask, t(ws), out)
        return out


class Lambda(Transform):
    """Wrap a plain function ``ws -> ws`` (for composition and repr)."""

    def __init__(self, fn: Callable[[WeightSpace], WeightSpace]):
        super().__init__(None)
        self.fn = fn

    def apply(self, ws: WeightSpace) -> WeightSpace:
        return self.fn(ws)


class Denormalized(Transform):
    """Run ``transform`` on raw weights: ``normalize(transform(denormalize(ws)))``.

    ``ZooDataset`` applies its transform *after* per-tensor normalization
    ``(t - mean) / std``. Permutations, noise, dropout, quantile zeroing and Mixup
    commute with it (or are defined relative to the tensor's own scale), but sign
    flips, rescalings, the SIREN bias shift and the INR input edits are only
    function-preserving / exact on raw weights: wrap them in this with the dataset's
    ``stats`` (a :class:`datasets_zoo.dataset.WeightStats`).
    """

    def __init__(self, transform: Callable[[WeightSpace], WeightSpace], stats):
        super().__init__(None)
        self.transform = transform
        self.stats = stats

    def apply(self, ws: WeightSpace) -> WeightSpace:
        return self.stats.normalize(self.transform(self.stats.denormalize(ws)))
