"""Weight-space augmentations: composable, per-network random transforms of a WeightSpace batch.

Every transform is a callable ``t(ws) -> ws`` drawing its randomness independently per
network, seeded with ``generator=<int | torch.Generator | None>``; they plug into
``ZooDataset(transform=...)``. Mixup needs a partner and plugs into the collate step.

* composition (:mod:`.base`): :class:`Compose`, :class:`RandomApply` (probability per
  network), :class:`RandomChoice`, :class:`Denormalized` (run on raw weights);
* function-preserving (:mod:`.function_preserving`): :class:`RandomPermutation`,
  :class:`RandomScaling` (ReLU), :class:`RandomSignFlip` (tanh, sine),
  :class:`SirenBiasShift`;
* data-agnostic (:mod:`.data_agnostic`): :class:`GaussianNoise` (0.32 x per-tensor std),
  :class:`WeightDropout`, :class:`QuantileZeroing`;
* INR input edits (:mod:`.inr`): :func:`inr_affine`, :class:`RandomRotation`,
  :class:`RandomScale`, :class:`RandomTranslation` (first layer only; exact);
* Mixup (:mod:`.mixup`): :class:`MixUp` (naive / random-permutation / weight-matching /
  reference alignment, weights-only labels), :class:`MixUpCollate`, :class:`WithIndex`,
  :class:`ReferenceAligner`, :class:`PairAlignmentCache`, :func:`mix_labels`;
* recipes (:mod:`.recipes`): functions building the (transform, Mixup) pairs that
  ``wspace train augment=<name>`` uses (each ``configs/train/augment/<name>.yaml``
  names one with ``_target_``, e.g. ``wspace.augment.recipes.mixup``, and sets its options).

Example::

    from wspace import augment as A
    t = A.Compose([A.RandomPermutation(), A.RandomApply(A.SirenBiasShift(), p=0.5),
                   A.GaussianNoise(0.32)])  # on normalized data wrap non-permutations in A.Denormalized
    train = zoo.dataset("train", target="class", transform=t)
"""
from .base import Compose, Denormalized, Lambda, RandomApply, RandomChoice, Transform, make_generator, select_networks
from .data_agnostic import GaussianNoise, QuantileZeroing, WeightDropout
from .function_preserving import RandomPermutation, RandomScaling, RandomSignFlip, SirenBiasShift, sine_groups
from .inr import RandomRotation, RandomScale, RandomTranslation, inr_affine, rotation_matrix
from .mixup import MixUp, MixUpCollate, PairAlignmentCache, ReferenceAligner, WithIndex, mix_labels
from . import recipes

__all__ = [
    "Transform", "Compose", "RandomApply", "RandomChoice", "Denormalized", "Lambda", "make_generator",
    "select_networks",
    "RandomPermutation", "RandomScaling", "RandomSignFlip", "SirenBiasShift", "sine_groups",
    "GaussianNoise", "WeightDropout", "QuantileZeroing",
    "inr_affine", "RandomRotation", "RandomScale", "RandomTranslation", "rotation_matrix",
    "MixUp", "MixUpCollate", "PairAlignmentCache", "ReferenceAligner", "WithIndex", "mix_labels",
    "recipes",
]
