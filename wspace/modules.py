"""Small building blocks that weight-space specs understand.

Plain ``torch.nn`` has no sine activation, no residual wrapper and no global
average pooling layer; these are the library's versions. Their state_dict keys are
stable so that :func:`wspace.spec_from_module` and ``WeightSpaceSpec.build_module``
agree.
"""
from __future__ import annotations

import torch
from torch import nn


class Sine(nn.Module):
    """``sin(w0 * x)``: the SIREN activation (Sitzmann et al., 2020)."""

    def __init__(self, w0: float = 30.0):
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Residual(nn.Module):
    """``x + block(x)``. The block must map the stream to the same shape.

    The layers that read from and write into the residual stream share one
    permutation group in the weight-space spec.
    """

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.block = layers[0] if len(layers) == 1 and isinstance(layers[0], nn.Sequential) else nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class GlobalAvgPool(nn.Module):
    """Mean over all spatial axes: ``[N, C, *spatial] -> [N, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)
