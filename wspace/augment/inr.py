"""INR input-space edits expressed in weights (rotation, scaling, translation of the coordinates).

An INR ``f`` reads coordinates ``x`` through its first layer ``W1 x + b1``. Replacing
``W1 <- W1 A`` and ``b1 <- b1 + W1 t`` gives ``W1 (A x + t) + b1``, so the new network is
exactly ``f'(x) = f(A x + t)``: the represented signal seen through the affine map
``x -> A x + t``. The edit is exact because it touches the first layer only (the
published translation that propagates through deeper layers is not exact); it needs a
first layer that is ``nn.Linear`` on coordinates (``spec.input_dims == 0``).
These act on raw weights (wrap in :class:`~wspace.augment.Denormalized` for normalized data).

Published ranges (Shamsian et al., 2024): rotation +-30 degrees (2-D), scale 1 +- 0.2,
translation +-0.25.
"""
from __future__ import annotations

import math

import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace
from .base import Transform

__all__ = ["inr_affine", "RandomRotation", "RandomScale", "RandomTranslation", "rotation_matrix"]


def _first_layer(ws: WeightSpace):
    spec = ws.spec
    layer = spec.layers[0]
    if spec.input_dims != 0 or layer.kind != "linear":
        raise WeightSpaceError(
            f"INR input edits need a first nn.Linear layer on coordinates; {spec!r} starts with a {layer.kind} layer"
            f" on {spec.input_dims}-d inputs"
        )
    return layer


def inr_affine(ws: WeightSpace, A: torch.Tensor | None = None, t: torch.Tensor | None = None) -> WeightSpace:
    """Networks computing ``f(A x + t)``: ``W1 <- W1 A``, ``b1 <- b1 + W1 t`` (first layer only; exact).

    Args:
        ws: INRs whose first layer is linear on ``d`` input coordinates.
        A: ``[d, d]`` or per network ``[B, d, d]`` (identity if ``None``).
        t: ``[d]`` or per network ``[B, d]`` (zero if ``None``); needs a first-layer bias.
    """
    layer = _first_layer(ws)
    B, d = len(ws), layer.in_features
    tensors = list(ws.tensors)
    W = tensors[layer.weight]  # [B, h, d]
    if t is not None:
        if layer.bias is None:
            raise WeightSpaceError("translation needs a first-layer bias", tensor=ws.spec.params[layer.weight].key)
        t = torch.as_tensor(t, dtype=W.dtype, device=W.device)
        t = t.expand(B, d) if t.dim() == 1 else t
        if t.shape != (B, d):
            raise WeightSpaceError(f"translation has shape {tuple(t.shape)}, expected [{d}] or [{B}, {d}]")
        tensors[layer.bias] = tensors[layer.bias] + torch.einsum("bhd,bd->bh", W, t)
    if A is not None:
        A = torch.as_tensor(A, dtype=W.dtype, device=W.device)
        A = A.expand(B, d, d) if A.dim() == 2 else A
        if A.shape != (B, d, d):
            raise WeightSpaceError(f"input map has shape {tuple(A.shape)}, expected [{d}, {d}] or [{B}, {d}, {d}]")
        tensors[layer.weight] = torch.bmm(W, A)
    return WeightSpace(ws.spec, tensors)


def rotation_matrix(angle: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 2]`` rotation matrices for angles ``[B]`` in radians."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


class RandomRotation(Transform):
    """Rotate 2-D INR coordinates by an angle uniform in ``[-degrees, degrees]`` per network:
    ``f'(x) = f(R x)`` (so the image appears rotated by ``-angle``; the range is symmetric)."""

    def __init__(self, degrees: float = 30.0, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        self.degrees = float(degrees)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        if _first_layer(ws).in_features != 2:
            raise WeightSpaceError(f"RandomRotation needs 2-D INRs; {ws.spec!r} reads {ws.spec.in_features} coordinates")
        u = torch.rand(len(ws), generator=self.generator, dtype=torch.float64) * 2 - 1
        return inr_affine(ws, A=rotation_matrix(u * math.radians(self.degrees)))


class RandomScale(Transform):
    """Scale INR coordinates by ``s ~ U(1 - amount, 1 + amount)`` per network: ``f'(x) = f(s x)``
    (``isotropic=False``: one factor per coordinate)."""

    def __init__(self, amount: float = 0.2, isotropic: bool = True, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if not 0 <= amount < 1:
            raise WeightSpaceError(f"RandomScale amount must be in [0, 1), got {amount}")
        self.amount, self.isotropic = float(amount), bool(isotropic)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        d = _first_layer(ws).in_features
        n = 1 if self.isotropic else d
        s = 1 + (torch.rand(len(ws), n, generator=self.generator, dtype=torch.float64) * 2 - 1) * self.amount
        return inr_affine(ws, A=torch.diag_embed(s.expand(len(ws), d)))


class RandomTranslation(Transform):
    """Translate INR coordinates by ``t ~ U(-amount, amount)^d`` per network: ``f'(x) = f(x + t)``."""

    def __init__(self, amount: float = 0.25, generator: torch.Generator | int | None = None):
        super().__init__(generator)
        if amount < 0:
            raise WeightSpaceError(f"RandomTranslation amount must be >= 0, got {amount}")
        self.amount = float(amount)

    def apply(self, ws: WeightSpace) -> WeightSpace:
        d = _first_layer(ws).in_features
        t = (torch.rand(len(ws), d, generator=self.generator, dtype=torch.float64) * 2 - 1) * self.amount
        return inr_affine(ws, t=t)
