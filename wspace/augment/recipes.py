"""Augmentation recipes: the families of Shamsian et al. as ready-made (transform, Mixup) pairs.

Each recipe is a function ``recipe(*, stats, num_classes, seed, **options) -> (transform
or None, MixUp or None)``. ``configs/train/augment/<name>.yaml`` names one with
``_target_`` and sets its options, so ``wspace train augment=<name>`` and
``benchmarks/augment.py`` build the same thing::

    transform, mixup = combo(stats=dm.stats, num_classes=dm.num_classes, seed=0)
    dm.set_augmentation(transform, MixUpCollate(mixup, num_classes=dm.num_classes) if mixup else None)

* :func:`no_augmentation`;
* :func:`symmetry`: random hidden-neuron permutation, sine sign flips, SIREN bias shift
  (function-preserving); :func:`symmetry_mixup` adds phase-canonical aligned Mixup,
  :func:`symmetry_data_agnostic` one data-agnostic edit;
* :func:`data_agnostic`: one of Gaussian noise (noise x tensor std), weight dropout,
  quantile zeroing;
* :func:`inr_input`: one of input rotation, scaling, translation through the first layer (INRs);
* :func:`symmetry_inr`: sine sign flips and SIREN bias shift, then one INR input edit
  (``mixup=True``: then phase-canonical aligned Mixup);
* :func:`combo`: one INR input edit, then aligned Mixup;
* :func:`mixup`: Mixup alone (``align``: ``None`` as stored, ``"random"`` permutation,
  ``"weight_matching"``; ``canonical``: ``"signs"`` / ``"phases"`` first; ``weights_only``).

Edits that are exact only on raw weights (sign flips, the SIREN bias shift, INR input
edits) are wrapped in :class:`~wspace.augment.Denormalized` when ``stats`` is given
(data that :class:`~datasets_zoo.ZooDataset` normalized per tensor). Every random draw
is seeded from ``seed`` (each component with its own generator, at fixed offsets, so a
recipe draws the same augmentations whichever way it is built).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from wspace.errors import WeightSpaceError

from .base import Compose, Denormalized, RandomApply, RandomChoice
from .data_agnostic import GaussianNoise, QuantileZeroing, WeightDropout
from .function_preserving import RandomPermutation, RandomSignFlip, SirenBiasShift
from .inr import RandomRotation, RandomScale, RandomTranslation
from .mixup import MixUp

__all__ = [
    "Recipe", "no_augmentation", "symmetry", "data_agnostic", "inr_input", "mixup", "symmetry_mixup",
    "symmetry_data_agnostic", "symmetry_inr", "combo",
]

Recipe = Tuple[Optional[Callable], Optional[MixUp]]
CANONICAL = (None, "signs", "phases")


def _base(seed: int) -> int:
    return 100 * int(seed)


def _raw(t: Callable, stats: Any) -> Callable:
    """``t`` on raw weights: wrapped in :class:`Denormalized` when the data is normalized."""
    return t if stats is None else Denormalized(t, stats)


def _inr_edit(g: int, degrees: float, scale: float, shift: float) -> RandomChoice:
    """One of the three INR input edits; seeds ``g .. g + 3``."""
    return RandomChoice([RandomRotation(degrees, generator=g), RandomScale(scale, generator=g + 1),
                         RandomTranslation(shift, generator=g + 2)], generator=g + 3)


def _sine_symmetries(g: int) -> list[Callable]:
    """Sign flip and SIREN bias shift (p 0.5); seeds ``g .. g + 2``."""
    return [RandomSignFlip(0.5, generator=g), RandomApply(SirenBiasShift(generator=g + 1), 0.5, generator=g + 2)]


def _symmetry(s: int, stats: Any) -> Compose:
    return Compose([RandomPermutation(generator=s + 1), _raw(Compose(_sine_symmetries(s + 2)), stats)])


def _data_agnostic(s: int, noise: float) -> RandomChoice:
    return RandomChoice([GaussianNoise(noise, generator=s + 5), WeightDropout(0.1, generator=s + 6),
                         QuantileZeroing(0.1, generator=s + 7)], generator=s + 8)


def _mix(s: int, align: str | None, alpha: float, num_classes: int | None, stats: Any, weights_only: bool = False,
         canonical: str | None = None) -> MixUp:
    if canonical not in CANONICAL:
        raise WeightSpaceError(f"mixup canonical must be one of {CANONICAL}, got {canonical!r}")
    return MixUp(align=align, alpha=alpha, weights_only=weights_only, num_classes=num_classes,
                 canonical_signs=canonical == "signs", canonical_phases=canonical == "phases",
                 stats=stats if canonical else None, generator=s + 16)


def no_augmentation(*, stats: Any = None, num_classes: int | None = None, seed: int = 0) -> Recipe:
    """No augmentation: ``(None, None)``."""
    return None, None


def symmetry(*, stats: Any = None, num_classes: int | None = None, seed: int = 0) -> Recipe:
    """Random hidden-neuron permutation, sine sign flips, SIREN bias shift (function-preserving)."""
    return _symmetry(_base(seed), stats), None


def data_agnostic(*, noise: float = 0.32, stats: Any = None, num_classes: int | None = None, seed: int = 0) -> Recipe:
    """One of Gaussian noise (``noise`` x tensor std), weight dropout, quantile zeroing."""
    return _data_agnostic(_base(seed), noise), None


def inr_input(*, degrees: float = 30.0, scale: float = 0.2, shift: float = 0.25, stats: Any = None,
              num_classes: int | None = None, seed: int = 0) -> Recipe:
    """One of input rotation (``degrees``), scaling, translation through the first layer (INRs)."""
    return _raw(_inr_edit(_base(seed) + 9, degrees, scale, shift), stats), None


def mixup(*, align: str | None = "weight_matching", alpha: float = 1.0, weights_only: bool = False,
          canonical: str | None = None, stats: Any = None, num_classes: int | None = None, seed: int = 0) -> Recipe:
    """Mixup alone, Beta(``alpha``, ``alpha``): partners as stored (``align=None``), randomly
    permuted (``"random"``) or weight-matched (``"weight_matching"``), after bringing signs
    (``canonical="signs"``) or signs and SIREN phases (``"phases"``) to canonical form;
    ``weights_only``: mix the weights, keep the dominant network's hard label."""
    return None, _mix(_base(seed), align, alpha, num_classes, stats, weights_only, canonical)


def symmetry_mixup(*, alpha: float = 1.0, stats: Any = None, num_classes: int | None = None, seed: int = 0) -> Recipe:
    """:func:`symmetry`, then phase-canonical aligned Mixup (which undoes the flips and shifts
    before matching)."""
    s = _base(seed)
    return _symmetry(s, stats), _mix(s, "weight_matching", alpha, num_classes, stats, canonical="phases")


def symmetry_data_agnostic(*, noise: float = 0.32, stats: Any = None, num_classes: int | None = None,
                           seed: int = 0) -> Recipe:
    """:func:`symmetry`, then one data-agnostic edit (noise, dropout or quantile zeroing)."""
    s = _base(seed)
    return Compose([_symmetry(s, stats), _data_agnostic(s, noise)]), None


def symmetry_inr(*, degrees: float = 30.0, scale: float = 0.2, shift: float = 0.25, mixup: bool = False,
                 alpha: float = 1.0, stats: Any = None, num_classes: int | None = None, seed: int = 0) -> Recipe:
    """Sine sign flips and SIREN bias shift, then one INR input edit; with ``mixup=True``,
    then phase-canonical aligned Mixup (which undoes the flips and shifts before matching)."""
    s = _base(seed)
    transform = _raw(Compose([*_sine_symmetries(s + 13), _inr_edit(s + 17, degrees, scale, shift)]), stats)
    return transform, (_mix(s, "weight_matching", alpha, num_classes, stats, canonical="phases") if mixup else None)


def combo(*, alpha: float = 1.0, degrees: float = 30.0, scale: float = 0.2, shift: float = 0.25, stats: Any = None,
          num_classes: int | None = None, seed: int = 0) -> Recipe:
    """One INR input edit, then aligned Mixup.

    No sign flips or bias shifts: they would run before Mixup and are outside the
    permutation group that weight matching searches, so partners would be mixed misaligned.
    """
    s = _base(seed)
    return _raw(_inr_edit(s + 17, degrees, scale, shift), stats), _mix(s, "weight_matching", alpha, num_classes, None)
