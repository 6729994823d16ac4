"""Named augmentation recipes: the families of Shamsian et al. as ready-made (transform, Mixup) pairs.

``wspace train augment=<name>`` and ``benchmarks/augment.py`` both build their
augmentation here, so a recipe means the same thing everywhere::

    transform, mixup = recipe("combo", stats=dm.stats, num_classes=dm.num_classes, seed=0)
    dm.set_augmentation(transform, MixUpCollate(mixup, num_classes=dm.num_classes) if mixup else None)

Edits that are exact only on raw weights (sign flips, the SIREN bias shift, INR input
edits) are wrapped in :class:`~wspace.augment.Denormalized` when ``stats`` is given
(data that :class:`~datasets_zoo.ZooDataset` normalized per tensor).
"""
from __future__ import annotations

from typing import Any, Callable

from wspace.errors import WeightSpaceError

from .base import Compose, Denormalized, RandomApply, RandomChoice
from .data_agnostic import GaussianNoise, QuantileZeroing, WeightDropout
from .function_preserving import RandomPermutation, RandomSignFlip, SirenBiasShift
from .inr import RandomRotation, RandomScale, RandomTranslation
from .mixup import MixUp

__all__ = ["RECIPES", "recipe"]

RECIPES: dict[str, str] = {
    "none": "no augmentation",
    "symmetry": "random hidden-neuron permutation, sine sign flips, SIREN bias shift (function-preserving)",
    "data_agnostic": "one of Gaussian noise (noise x tensor std), weight dropout, quantile zeroing",
    "inr_input": "one of input rotation, scaling, translation through the first layer (INRs)",
    "mixup_naive": "Mixup of the weights as stored",
    "mixup_random_perm": "Mixup after a random permutation of the partner",
    "mixup_aligned": "Mixup after weight-matching the partner to the first network",
    "mixup_aligned_signs": "Mixup after sign-canonicalizing both networks and weight-matching the partner",
    "mixup_aligned_phases": "Mixup after bringing both networks' signs and SIREN phases to canonical form "
                            "and weight-matching the partner",
    "mixup_weights_only": "aligned Mixup of the weights, hard label of the dominant network",
    "symmetry_inr": "sine sign flips and SIREN bias shift, then one INR input edit (no Mixup)",
    "combo": "one INR input edit, then aligned Mixup (no sign flips: weight matching does not undo them)",
    "symmetry_mixup": "symmetry, then phase-canonical aligned Mixup (which undoes the flips and shifts before "
                      "matching)",
    "symmetry_data_agnostic": "symmetry, then one data-agnostic edit (noise, dropout or quantile zeroing)",
    "symmetry_inr_mixup": "symmetry_inr (sign flips, SIREN bias shift, one INR input edit), then phase-canonical "
                          "aligned Mixup (which undoes the flips and shifts before matching)",
}


def recipe(name: str, *, stats: Any = None, num_classes: int | None = None, seed: int = 0, noise: float = 0.32,
           alpha: float = 1.0, degrees: float = 30.0, scale: float = 0.2, shift: float = 0.25
           ) -> tuple[Callable | None, MixUp | None]:
    """``(per-sample transform or None, MixUp or None)`` for recipe ``name`` (see :data:`RECIPES`).

    Args:
        stats: the dataset's per-tensor normalization stats (``ZooDataModule.stats``), or
            ``None`` for raw weights.
        num_classes: for Mixup's soft labels.
        seed: seeds every random draw (each component gets its own generator).
        noise / alpha / degrees / scale / shift: Gaussian-noise scale (x tensor std), Mixup
            Beta(alpha, alpha), rotation range, scaling amount, translation amount.
    """
    if name not in RECIPES:
        raise WeightSpaceError(f"unknown augmentation recipe '{name}' (available: {', '.join(RECIPES)})")
    s = 100 * int(seed)

    def raw(t: Callable) -> Callable:
        return t if stats is None else Denormalized(t, stats)

    def inr_edit(g: int) -> RandomChoice:  # one of the three input edits, seeds g .. g + 3
        return RandomChoice([RandomRotation(degrees, generator=g), RandomScale(scale, generator=g + 1),
                             RandomTranslation(shift, generator=g + 2)], generator=g + 3)

    def mix(align: str | None, weights_only: bool = False, canonical: str | None = None) -> MixUp:
        return MixUp(align=align, alpha=alpha, weights_only=weights_only, num_classes=num_classes,
                     canonical_signs=canonical == "signs", canonical_phases=canonical == "phases",
                     stats=stats if canonical else None, generator=s + 16)

    def sine_symmetries(g: int) -> list[Callable]:  # sign flip, SIREN bias shift (p 0.5); seeds g .. g + 2
        return [RandomSignFlip(0.5, generator=g), RandomApply(SirenBiasShift(generator=g + 1), 0.5, generator=g + 2)]

    if name == "none":
        return None, None

    symmetry = Compose([RandomPermutation(generator=s + 1), raw(Compose(sine_symmetries(s + 2)))])
    data_agnostic = RandomChoice([GaussianNoise(noise, generator=s + 5), WeightDropout(0.1, generator=s + 6),
                                  QuantileZeroing(0.1, generator=s + 7)], generator=s + 8)
    if name == "symmetry":
        return symmetry, None
    if name == "data_agnostic":
        return data_agnostic, None
    if name == "symmetry_mixup":
        return symmetry, mix("weight_matching", canonical="phases")
    if name == "symmetry_data_agnostic":
        return Compose([symmetry, data_agnostic]), None
    if name == "inr_input":
        return raw(inr_edit(s + 9)), None
    if name in ("symmetry_inr", "symmetry_inr_mixup"):
        transform = raw(Compose([*sine_symmetries(s + 13), inr_edit(s + 17)]))
        return transform, (mix("weight_matching", canonical="phases") if name == "symmetry_inr_mixup" else None)
    if name == "combo":
        # Sign flips and bias shifts would run before Mixup and are outside the permutation
        # group that weight matching searches: partners would be mixed misaligned.
        return raw(inr_edit(s + 17)), mix("weight_matching")
    align = {"mixup_naive": None, "mixup_random_perm": "random", "mixup_aligned": "weight_matching",
             "mixup_aligned_signs": "weight_matching", "mixup_aligned_phases": "weight_matching",
             "mixup_weights_only": "weight_matching"}[name]
    canonical = {"mixup_aligned_signs": "signs", "mixup_aligned_phases": "phases"}.get(name)
    return None, mix(align, weights_only=name == "mixup_weights_only", canonical=canonical)
