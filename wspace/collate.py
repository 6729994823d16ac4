"""Batching of ``(WeightSpace, target)`` items, shared by zoo datasets and augmentations."""
from __future__ import annotations

from typing import Sequence

import torch

from .space import WeightSpace

__all__ = ["collate_dense"]


def collate_dense(items: Sequence[tuple[WeightSpace, torch.Tensor | None]]) -> tuple[WeightSpace, torch.Tensor | None]:
    """Batch ``(WeightSpace, target)`` items into ``(WeightSpace with B = len(items), targets)``."""
    ws = WeightSpace.cat([w for w, _ in items])
    ys = [y for _, y in items]
    if any(y is None for y in ys):
        return ws, None
    return ws, torch.stack(ys)
