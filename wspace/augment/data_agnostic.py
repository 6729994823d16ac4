"""Data-agnostic augmentations: perturb the weights without looking at the function.

Published defaults (Shamsian et al., ICML 2024): Gaussian noise with standard deviation
0.32 x the tensor's std, dropout p = 0.1 on weights and biases, zeroing every entry
below a random quantile ``q ~ U(0, 0.1)`` of all magnitudes.
"""
from __future__ import annotations

import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace
from .base import Transform

__all__ = ["GaussianNoise", "WeightDropout", "QuantileZeroing"]


def _roles(weights: bool, biases: bool) -> set[str]:
    roles = {r for r, on in (("weight", weights), ("bias", biases)) if on}
    if not roles:
        raise WeightSpaceError("the augmentation must act on weights, biases or both")
    return roles


class GaussianNoise(Transform):
    """Add ``N(0, (scale * std)^2)`` noise, where ``std`` is each tensor's own standard
    deviation *per network* (weights and biases separately).

    A fresh draw on every call (DWSNets' loader once added a constant ``std * scale``
    shift instead; the tests check this one is random). Tensors with one entry have no
    spread and get no noise (``std`` is taken as 0).
    """

    def __init__(self, scale: float = 0.32, weights: bool = True, biases: bool = True,
                 generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if scale < 0:
            raise WeightSpaceError(f"GaussianNoise scale must be >= 0, got {scale}")
        self.scale = float(scale)
        self.roles = _roles(weights, biases)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        B = len(ws)
        out = []
        for p, t in zip(ws.spec.params, ws.tensors):
            if p.role not in self.roles or p.numel < 2:
                out.append(t)
                continue
            std = t.detach().reshape(B, -1).std(dim=1).nan_to_num(0.0)
            noise = torch.randn(t.shape, generator=self.generator, dtype=t.dtype).to(t.device)
            out.append(t + noise * (self.scale * std).reshape(B, *([1] * (t.dim() - 1))))
        return WeightSpace(ws.spec, out)


class WeightDropout(Transform):
    """Zero each entry independently with probability ``p`` (weights and/or biases).

    ``rescale=True`` (default, as ``F.dropout`` in the published code) multiplies the
    kept entries by ``1 / (1 - p)``.
    """

    def __init__(self, p: float = 0.1, weights: bool = True, biases: bool = True, rescale: bool = True,
                 generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if not 0.0 <= p < 1.0:
            raise WeightSpaceError(f"WeightDropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rescale = bool(rescale)
        self.roles = _roles(weights, biases)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        if self.p == 0.0:
            return ws
        out = []
        for p, t in zip(ws.spec.params, ws.tensors):
            if p.role not in self.roles:
                out.append(t)
                continue
            keep = (torch.rand(t.shape, generator=self.generator) >= self.p).to(device=t.device, dtype=t.dtype)
            out.append(t * keep / (1.0 - self.p) if self.rescale else t * keep)
        return WeightSpace(ws.spec, out)


class QuantileZeroing(Transform):
    """Zero the smallest-magnitude entries: per network, draw ``q ~ U(0, max_quantile)``
    and zero every entry (over all weights and biases together) whose ``|w|`` is below
    the ``q``-quantile of that network's magnitudes (lower quantile, no interpolation)."""

    def __init__(self, max_quantile: float = 0.1, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if not 0.0 <= max_quantile <= 1.0:
            raise WeightSpaceError(f"QuantileZeroing max_quantile must be in [0, 1], got {max_quantile}")
        self.max_quantile = float(max_quantile)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        if self.max_quantile == 0.0:
            return ws
        B = len(ws)
        mags = ws.flatten().detach().abs()
        D = mags.shape[1]
        q = torch.rand(B, generator=self.generator) * self.max_quantile
        pos = (q * (D - 1)).floor().long().to(mags.device)
        thr = mags.sort(dim=1).values.gather(1, pos.unsqueeze(1)).squeeze(1)
        out = [t * (t.abs() >= thr.to(t.dtype).reshape(B, *([1] * (t.dim() - 1)))) for t in ws.tensors]
        return WeightSpace(ws.spec, out)
