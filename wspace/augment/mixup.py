"""Mixup of networks (naive, random-permutation, alignment-based, weights-only) and its collate step.

``MixUp(...)(ws_a, ws_b, label_a, label_b)`` returns ``lam * A + (1 - lam) * B'`` and
the labels mixed with the same ``lam`` (per pair), where ``B'`` is the partner:

* ``align=None``: ``B`` as is (naive Mixup);
* ``align="random"``: ``B`` with its hidden neurons randomly permuted;
* ``align="weight_matching"``: ``B`` permuted onto ``A`` by Git Re-Basin weight matching
  (:func:`wspace.align.weight_matching`, batched over all pairs), the alignment Mixup of
  Shamsian et al. (ICML 2024); optional cache of the permutation per (index_a, index_b);
* ``align="reference"``: ``A`` and ``B`` both permuted onto one fixed reference network
  (canonicalization; each network's permutation computed once and cached by index, so
  steady-state cost is a gather). The mix lives in the reference's neuron order.

Permutations and convex combinations commute with the per-tensor normalization of
``ZooDataset``, so Mixup can run on normalized batches (e.g. in :class:`MixUpCollate`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..align import weight_matching
from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..symmetry import Permutation, canonical_frame, from_canonical_frame, permute, random_permutation
from .base import Transform

__all__ = ["MixUp", "MixUpCollate", "ReferenceAligner", "PairAlignmentCache", "WithIndex", "mix_labels"]

ALIGN_MODES = (None, "random", "weight_matching", "reference")


def _as_lam(lam: float | torch.Tensor, B: int) -> torch.Tensor:
    lam = torch.as_tensor(lam, dtype=torch.float32)
    if lam.dim() == 0:
        lam = lam.expand(B)
    if lam.shape != (B,):
        raise WeightSpaceError(f"lam must be a number or a [B={B}] tensor, got shape {tuple(lam.shape)}")
    if bool(((lam < 0) | (lam > 1)).any()):
        raise WeightSpaceError("lam must lie in [0, 1]")
    return lam


def mix_labels(label_a: torch.Tensor, label_b: torch.Tensor, lam: torch.Tensor,
               num_classes: int | None = None, weights_only: bool = False) -> torch.Tensor:
    """Mix labels with the per-pair coefficient ``lam`` ([B]).

    * integer class indices ``[B]`` -> soft labels ``[B, num_classes]``
      (``lam * onehot(a) + (1 - lam) * onehot(b)``);
    * float targets (regression ``[B]``, or soft labels ``[B, C]``) -> mixed directly;
    * ``weights_only=True``: the label of the dominant network (``lam >= 0.5``: ``a``), unchanged.
    """
    if label_a.shape != label_b.shape:
        raise WeightSpaceError(f"labels differ in shape: {tuple(label_a.shape)} vs {tuple(label_b.shape)}")
    lam = lam.to(label_a.device)
    if weights_only:
        keep = (lam >= 0.5).reshape(-1, *([1] * (label_a.dim() - 1)))
        return torch.where(keep, label_a, label_b)
    if not label_a.is_floating_point():
        if num_classes is None:
            raise WeightSpaceError("mixing class-index labels needs num_classes (or pass one-hot float labels)")
        ya = torch.nn.functional.one_hot(label_a.long(), num_classes).float()
        yb = torch.nn.functional.one_hot(label_b.long(), num_classes).float()
        lam_ = lam.reshape(-1, *([1] * (ya.dim() - 1)))
        return lam_ * ya + (1 - lam_) * yb
    lam_ = lam.to(label_a.dtype).reshape(-1, *([1] * (label_a.dim() - 1)))
    return lam_ * label_a + (1 - lam_) * label_b


def _perm_rows(perm: Permutation, b: int) -> dict[int, torch.Tensor]:
    return {g: p[b].clone() for g, p in perm.items()}


def _stack_rows(rows: Sequence[dict[int, torch.Tensor]]) -> Permutation:
    return Permutation({g: torch.stack([r[g] for r in rows]) for g in rows[0]})


class PairAlignmentCache:
    """Weight-matching permutations keyed by ``(index_a, index_b)`` (``B -> A``).

    A miss is computed batched with the other misses of the call; a hit on the reversed
    pair is inverted. ``hits`` / ``misses`` count lookups. ``max_size`` bounds memory
    (oldest entries dropped first).
    """

    def __init__(self, max_size: int = 1_000_000):
        self.store: dict[tuple[int, int], dict[int, torch.Tensor]] = {}
        self.max_size = int(max_size)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.store)

    def lookup(self, ws_a: WeightSpace, ws_b: WeightSpace, index_a: Sequence[int], index_b: Sequence[int],
               **wm_kwargs: Any) -> Permutation:
        keys = list(zip((int(i) for i in index_a), (int(i) for i in index_b)))
        rows: list[dict[int, torch.Tensor] | None] = []
        for ka, kb in keys:
            if (ka, kb) in self.store:
                rows.append(self.store[(ka, kb)])
            elif (kb, ka) in self.store:  # P(a -> b) is the inverse of P(b -> a)
                rows.append({g: torch.argsort(p) for g, p in self.store[(kb, ka)].items()})
            else:
                rows.append(None)
        miss = [i for i, r in enumerate(rows) if r is None]
        self.hits += len(keys) - len(miss)
        self.misses += len(miss)
        if miss:
            perm = weight_matching(ws_a[torch.tensor(miss)], ws_b[torch.tensor(miss)], **wm_kwargs)
            for j, i in enumerate(miss):
                rows[i] = _perm_rows(perm, j)
                if keys[i][0] != keys[i][1]:
                    self.store[keys[i]] = rows[i]
            while len(self.store) > self.max_size:
                self.store.pop(next(iter(self.store)))
        return _stack_rows(rows).to(ws_b.device)


class ReferenceAligner:
    """Canonicalization: permute networks onto one fixed ``reference`` (B = 1).

    ``aligner(ws, indices=None)`` returns ``ws`` permuted onto the reference (same
    functions). With ``indices`` (dataset positions), each network's permutation is
    computed once (batched over the misses) and then reused, so after the first epoch
    it costs a gather. ``precompute(ws, indices)`` fills the cache up front.
    Usable as a ``ZooDataset`` transform (without indices: aligned every time).
    """

    def __init__(self, reference: WeightSpace, cache: bool = True, **wm_kwargs: Any):
        if not isinstance(reference, WeightSpace) or len(reference) != 1:
            raise WeightSpaceError("the alignment reference must be a WeightSpace with one network")
        self.reference = reference
        self.cache = cache
        self.wm_kwargs = wm_kwargs
        self.store: dict[int, dict[int, torch.Tensor]] = {}

    def permutation(self, ws: WeightSpace, indices: Sequence[int] | None = None) -> Permutation:
        ref = self.reference.to(device=ws.device, dtype=ws.dtype)
        if indices is None or not self.cache:
            return weight_matching(ref, ws, **self.wm_kwargs)
        idx = [int(i) for i in indices]
        miss = [j for j, i in enumerate(idx) if i not in self.store]
        if miss:
            perm = weight_matching(ref, ws[torch.tensor(miss)], **self.wm_kwargs)
            for j, m in enumerate(miss):
                self.store[idx[m]] = _perm_rows(perm, j)
        return _stack_rows([self.store[i] for i in idx]).to(ws.device)

    def precompute(self, ws: WeightSpace, indices: Sequence[int]) -> None:
        self.permutation(ws, indices)

    def __call__(self, ws: WeightSpace, indices: Sequence[int] | None = None) -> WeightSpace:
        if not ws.spec.groups:
            return ws
        return permute(ws, self.permutation(ws, indices))


class MixUp(Transform):
    """Mixup of network pairs with labels mixed by the same coefficient (see the module docstring).

    Args:
        align: ``None`` (naive), ``"random"``, ``"weight_matching"`` or ``"reference"``.
        alpha: ``lam ~ Beta(alpha, alpha)`` per pair when not given (``alpha=1``: uniform,
            the published setting).
        weights_only: mix the weights but keep the hard label of the dominant network.
        num_classes: turn class-index labels into mixed one-hot (soft) labels ``[B, C]``.
        cache: with ``align="weight_matching"``, cache permutations by ``(index_a, index_b)``
            (``True`` or a :class:`PairAlignmentCache`); needs indices in the call.
        reference: the network (B = 1) for ``align="reference"``, or a :class:`ReferenceAligner`.
        canonical_signs: with ``"weight_matching"``, match the partner in sign-canonical form
            (:func:`wspace.symmetry.canonicalize_signs`, tanh / sine neurons), so that what is
            left between the two is a permutation, the part weight matching searches; the
            partner then takes ``ws_a``'s own signs back. Function-preserving.
        canonical_phases: like ``canonical_signs`` (implies it), and sine neurons also get
            their phase ``w0 b`` reduced modulo ``pi`` (:func:`wspace.symmetry.canonicalize_phases`),
            so that SIREN bias shifts are undone too; the partner then takes ``ws_a``'s own
            phases and signs back.
        stats: the data's per-tensor normalization (``ZooDataModule.stats``) when the batches
            are normalized: sign flips are exact on raw weights only.
        generator: random source (seed, generator or ``None``).
        **wm_kwargs: passed to :func:`wspace.align.weight_matching` (``max_iter``, ``dtype``).

    Call: ``mix(ws_a, ws_b, label_a=None, label_b=None, lam=None, index_a=None, index_b=None)
    -> (ws, label)`` with ``lam`` a number or ``[B]`` tensor; ``lam=1`` returns ``ws_a``
    (for ``align="reference"``: ``ws_a`` in the reference's neuron order).
    """

    def __init__(self, align: str | None = None, alpha: float = 1.0, weights_only: bool = False,
                 num_classes: int | None = None, cache: bool | PairAlignmentCache = False,
                 reference: WeightSpace | ReferenceAligner | None = None, canonical_signs: bool = False,
                 canonical_phases: bool = False, stats: Any = None, generator: torch.Generator | int | None = None, **wm_kwargs: Any):
        super().__init__(generator)
        if align not in ALIGN_MODES:
            raise WeightSpaceError(f"MixUp align must be one of {ALIGN_MODES}, got {align!r}")
        if alpha <= 0:
            raise WeightSpaceError(f"MixUp alpha must be > 0, got {alpha}")
        self.align = align
        self.alpha = float(alpha)
        self.weights_only = bool(weights_only)
        self.num_classes = num_classes
        self.canonical_phases = bool(canonical_phases)
        self.canonical_signs, self.stats = bool(canonical_signs) or self.canonical_phases, stats
        if self.canonical_signs and align != "weight_matching":
            raise WeightSpaceError(f"canonical_signs / canonical_phases need align='weight_matching', got {align!r}")
        self.wm_kwargs = wm_kwargs
        self.cache = cache if isinstance(cache, PairAlignmentCache) else (PairAlignmentCache() if cache else None)
        if align == "reference":
            if reference is None:
                raise WeightSpaceError("align='reference' needs reference=<one network>")
            self.aligner = reference if isinstance(reference, ReferenceAligner) else ReferenceAligner(reference, **wm_kwargs)
        else:
            self.aligner = None

    def sample_lam(self, B: int) -> torch.Tensor:
        """``[B]`` coefficients from ``Beta(alpha, alpha)`` (numpy, seeded from this transform's generator)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return torch.from_numpy(np.random.default_rng(seed).beta(self.alpha, self.alpha, size=B)).float()

    def partner(self, ws_a: WeightSpace, ws_b: WeightSpace, index_a=None, index_b=None) -> tuple[WeightSpace, WeightSpace]:
        """``(A', B')``: the two networks of each pair as they are interpolated."""
        if not ws_a.spec.same_space(ws_b.spec):
            raise WeightSpaceError(f"cannot mix different architectures: {ws_a.spec!r} and {ws_b.spec!r}")
        if len(ws_a) != len(ws_b):
            raise WeightSpaceError(f"MixUp pairs need equal batches, got {len(ws_a)} and {len(ws_b)}")
        if self.align is None or not ws_a.spec.groups:
            return ws_a, ws_b
        if self.align == "random":
            return ws_a, permute(ws_b, random_permutation(ws_b.spec, len(ws_b), self.generator, device=ws_b.device))
        if self.canonical_signs:
            return self._partner_canonical(ws_a, ws_b, index_a, index_b)
        if self.align == "reference":
            return self.aligner(ws_a, index_a), self.aligner(ws_b, index_b)
        return ws_a, permute(ws_b, self._match(ws_a, ws_b, index_a, index_b))

    def _match(self, ws_a: WeightSpace, ws_b: WeightSpace, index_a, index_b) -> Permutation:
        """Weight matching of ``ws_b`` onto ``ws_a``, through the pair cache when indices are given."""
        kwargs = {"generator": self.generator, **self.wm_kwargs}
        if self.cache is not None and index_a is not None and index_b is not None:
            return self.cache.lookup(ws_a, ws_b, index_a, index_b, **kwargs)
        return weight_matching(ws_a, ws_b, **kwargs)

    def _partner_canonical(self, ws_a: WeightSpace, ws_b: WeightSpace, index_a, index_b
                           ) -> tuple[WeightSpace, WeightSpace]:
        """Align in ``ws_a``'s canonical frame, then return to ``ws_a``'s own frame.

        Both networks are brought to their canonical signs (and, with ``canonical_phases``,
        phases) on raw weights, the partner is aligned there, and the partner then gets
        ``ws_a``'s flips (and shifts) back; both maps are affine and function-preserving, so
        the mix is ``ws_a``'s frame throughout: ``lam=1`` returns ``ws_a`` exactly, and the
        mixed networks keep the sign and phase statistics of the data (a model never sees
        canonical-only training networks).
        """
        raw_a = ws_a if self.stats is None else self.stats.denormalize(ws_a)
        raw_b = ws_b if self.stats is None else self.stats.denormalize(ws_b)
        canon_a, shifts, flips = canonical_frame(raw_a, phases=self.canonical_phases)
        canon_b, _, _ = canonical_frame(raw_b, phases=self.canonical_phases)
        partner = permute(canon_b, self._match(canon_a, canon_b, index_a, index_b))
        partner = from_canonical_frame(partner, shifts, flips)
        return ws_a, partner if self.stats is None else self.stats.normalize(partner)

    def __call__(self, ws_a: WeightSpace, ws_b: WeightSpace, label_a: torch.Tensor | None = None,
                 label_b: torch.Tensor | None = None, lam: float | torch.Tensor | None = None,
                 index_a: Sequence[int] | None = None, index_b: Sequence[int] | None = None,
                 num_classes: int | None = None) -> tuple[WeightSpace, torch.Tensor | None]:
        if not isinstance(ws_a, WeightSpace) or not isinstance(ws_b, WeightSpace):
            raise WeightSpaceError("MixUp mixes two WeightSpace batches")
        B = len(ws_a)
        lam = self.sample_lam(B) if lam is None else _as_lam(lam, B)
        a, b = self.partner(ws_a, ws_b, index_a, index_b)
        lw = lam.to(device=a.device, dtype=a.dtype)
        mixed = a * lw + b * (1 - lw)
        if label_a is None or label_b is None:
            return mixed, None
        nc = num_classes if num_classes is not None else self.num_classes
        return mixed, mix_labels(label_a, label_b, lam, nc, self.weights_only)

    def apply(self, ws: WeightSpace) -> WeightSpace:  # pragma: no cover - MixUp needs a partner
        raise WeightSpaceError("MixUp needs a partner: call mix(ws_a, ws_b, ...) or use MixUpCollate")


class WithIndex(Dataset):
    """Wrap a dataset of ``(ws, y)`` items to yield ``(ws, y, index)`` (for alignment caches).

    Keeps ``ZooDataset``'s batched ``__getitems__`` reads.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        ws, y = self.dataset[i]
        return ws, y, int(i)

    def __getitems__(self, idxs: Sequence[int]) -> list:
        idxs = [int(i) for i in idxs]
        if hasattr(self.dataset, "__getitems__"):
            items = self.dataset.__getitems__(idxs)
        else:
            items = [self.dataset[i] for i in idxs]
        return [(ws, y, i) for (ws, y), i in zip(items, idxs)]


class MixUpCollate:
    """Collate function: batch the items, pair each with a shuffled copy of the batch, mix.

    Items are ``(ws, y)`` (``ZooDataset``) or ``(ws, y, index)`` (:class:`WithIndex`, lets
    the alignment caches key on dataset positions). Each network is mixed with
    probability ``p`` (others keep ``lam = 1``). With ``num_classes``, class labels come
    out as soft labels ``[B, num_classes]`` for every item (train with soft cross-entropy).

    Example::

        mix = MixUp(align="weight_matching", num_classes=10, generator=0)
        loader = DataLoader(train, batch_size=64, shuffle=True, collate_fn=MixUpCollate(mix))
    """

    def __init__(self, mixup: MixUp, base_collate: Callable | None = None, num_classes: int | None = None,
                 p: float = 1.0, generator: torch.Generator | int | None = None):
        if base_collate is None:
            from ..collate import collate_dense as base_collate  # the dense ZooDataset collate
        if not 0.0 <= p <= 1.0:
            raise WeightSpaceError(f"MixUpCollate probability must be in [0, 1], got {p}")
        self.mixup = mixup
        self.base_collate = base_collate
        self.num_classes = num_classes
        self.p = float(p)
        self._rng = Transform(generator)  # reuse the worker-safe generator handling

    def __call__(self, items: Sequence[tuple] | tuple[WeightSpace, torch.Tensor | None]
                 ) -> tuple[WeightSpace, torch.Tensor | None]:
        """Mix a list of items, or an already collated batch ``(ws, y)`` (the batch hook of
        :class:`wspace.tasks.ZooDataModule`, whose loaders read whole batches)."""
        indices = None
        if isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], WeightSpace):
            ws, y = items
        else:
            if items and len(items[0]) == 3:
                indices = torch.tensor([int(it[2]) for it in items])
                items = [(it[0], it[1]) for it in items]
            ws, y = self.base_collate(items)
        B = len(ws)
        g = self._rng.generator
        order = torch.randperm(B, generator=g)
        lam = self.mixup.sample_lam(B)
        if self.p < 1.0:
            lam = torch.where(torch.rand(B, generator=g) < self.p, lam, torch.ones_like(lam))
        ia = None if indices is None else indices.tolist()
        ib = None if indices is None else indices[order].tolist()
        y_b = None if y is None else y[order]
        return self.mixup(ws, ws[order], y, y_b, lam=lam, index_a=ia, index_b=ib, num_classes=self.num_classes)
