"""A population of M networks of one spec as one ``[M, D]`` parameter matrix."""
from __future__ import annotations

from typing import Sequence

import torch

from wspace.spec import WeightSpaceSpec

__all__ = ["param_views", "finite_rows"]


def param_views(spec: WeightSpaceSpec, flat: torch.Tensor) -> list[torch.Tensor]:
    """Per-parameter views ``[M, *shape]`` of a flat ``[M, D]`` parameter matrix."""
    chunks = torch.split(flat, [p.numel for p in spec.params], dim=1)
    return [c.view(flat.shape[0], *p.shape) for c, p in zip(chunks, spec.params)]


def finite_rows(loss: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[M]`` True where the loss and every gradient entry are finite (one reduction
    per tensor: a NaN/inf anywhere makes the row sum non-finite)."""
    total = loss.detach().clone()
    for g in grads:
        total += g.reshape(g.shape[0], -1).sum(1)
    return torch.isfinite(total)
