"""Function-preserving augmentations: random elements of the architecture's symmetry group.

Each returns networks that compute exactly the same function as their inputs (up to
float rounding), on raw weights (see :class:`~wspace.augment.Denormalized` for
normalized zoo data; permutations also commute with normalization):

* :class:`RandomPermutation`: hidden-neuron permutation of every group.
* :class:`RandomScaling`: positive per-neuron rescaling behind ReLU-like activations.
* :class:`RandomSignFlip`: per-neuron sign flips behind odd activations (tanh, sine).
* :class:`SirenBiasShift`: ``sin(w0 (z + k pi / w0)) = (-1)^k sin(w0 z)``: shift a sine
  neuron's bias by ``k pi / w0`` and flip its outgoing weights for odd ``k``.
"""
from __future__ import annotations

import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..symmetry import permute, random_permutation, random_scaling, random_sign_flip, shift_phases, sine_groups
from .base import Transform

__all__ = ["RandomPermutation", "RandomScaling", "RandomSignFlip", "SirenBiasShift", "sine_groups"]


class RandomPermutation(Transform):
    """Permute the hidden neurons of every group uniformly at random, per network."""

    def apply(self, ws: WeightSpace) -> WeightSpace:
        if not ws.spec.groups:
            return ws
        return permute(ws, random_permutation(ws.spec, len(ws), generator=self.generator, device=ws.device))


class RandomScaling(Transform):
    """Multiply each neuron behind a positively homogeneous activation (ReLU, LeakyReLU)
    by a factor log-uniform in ``[low, high]`` (incoming weights and bias times ``d``,
    outgoing weights divided by ``d``). Groups without the ``"scale"`` symmetry are left alone."""

    def __init__(self, low: float = 0.5, high: float = 2.0, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if not 0 < low <= high:
            raise WeightSpaceError(f"RandomScaling needs 0 < low <= high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        return random_scaling(ws, self.low, self.high, generator=self.generator)


class RandomSignFlip(Transform):
    """Flip each neuron behind an odd activation (tanh, sine) with probability ``p``
    (incoming weights, bias and outgoing weights negated; published default 0.5)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if not 0.0 <= p <= 1.0:
            raise WeightSpaceError(f"RandomSignFlip probability must be in [0, 1], got {p}")
        self.p = float(p)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        return random_sign_flip(ws, self.p, generator=self.generator)


class SirenBiasShift(Transform):
    """Shift each sine neuron's bias by ``k pi / w0`` (``k`` uniform in
    ``[-k_max, k_max)``, published default 4) and negate its outgoing weights for odd ``k``.

    The neuron computes ``sin(w0 (Wx + b))``; ``sin(u + k pi) = (-1)^k sin(u)``, so the
    shift multiplies the neuron's output by ``(-1)^k``, which the flipped outgoing
    weights undo. ``w0`` is read from the spec (each group its own), not assumed.
    Networks without sine neurons (feeding a bias-carrying layer) are returned unchanged.
    """

    def __init__(self, k_max: int = 4, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if int(k_max) < 1:
            raise WeightSpaceError(f"SirenBiasShift needs k_max >= 1, got {k_max}")
        self.k_max = int(k_max)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        groups = sine_groups(ws.spec)
        if not groups:
            return ws
        return shift_phases(ws, {g: torch.randint(-self.k_max, self.k_max, (len(ws), ws.spec.groups[g].size),
                                                  generator=self.generator) for g in groups})
