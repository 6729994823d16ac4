"""Pixel-centre coordinate grids: the inputs on which INRs (SIRENs) are evaluated."""
from __future__ import annotations

import torch

__all__ = ["coordinate_grid"]


def coordinate_grid(resolution: int) -> torch.Tensor:
    """``[resolution**2, 2]`` pixel-centre coordinates in [-1, 1]^2, row-major, (row, col)
    order (SIREN's ``get_mgrid``; ``linspace(-1, 1, resolution)`` on both axes)."""
    lin = torch.linspace(-1.0, 1.0, resolution)
    rows, cols = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([rows, cols], dim=-1).reshape(-1, 2)
