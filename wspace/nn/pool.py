"""InvariantPool: every invariant linear functional of weight-space features, concatenated.

The readout of the feature-layer encoders (:class:`~wspace.nn.UNF`, :class:`~wspace.nn.NFN`,
:class:`~wspace.nn.DWSNet`): features ``[B, C * F_i, *kept_i]`` -> ``[B, out_features]``.
"""
from __future__ import annotations

import torch
from torch import nn

from .basis import CoreCache, CoreKey, check_reduction, group_partitions
from .common import check_positive
from .features import FeatureLayout, Features, check_features

__all__ = ["InvariantPool"]


class InvariantPool(nn.Module):
    """Invariant pooling: per tensor, every invariant linear functional, concatenated.

    For each tensor and each partition of its kept axes into same-group blocks, the
    reduction (mean by default) over its diagonals; for ordinary tensors that is the
    mean over the permuted axes (a ``(g, g)`` stream-to-stream weight adds the mean of
    its diagonal). Folded axes stay as channels (HNP: network inputs/outputs unpooled).

    Shapes: features ``[B, channels * F_i, *kept_i]`` -> ``[B, out_features]``.
    """

    def __init__(self, layout: FeatureLayout, channels: int, reduction: str = "mean"):
        super().__init__()
        check_positive(channels=channels)
        check_reduction(reduction)
        self.layout, self.channels, self.reduction = layout, channels, reduction
        self._cin = layout.channels(channels)
        self._cores = [
            CoreKey(i, blocks, ()) for i, t in enumerate(layout.tensors) for blocks in group_partitions(t.groups)
        ]
        self.out_features = sum(self._cin[c.tensor] for c in self._cores)

    def forward(self, feats: Features) -> torch.Tensor:
        check_features(self.layout, feats, self._cin, type(self).__name__)
        cache = CoreCache(feats, self.reduction)
        return torch.cat([cache.get(c) for c in self._cores], 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, out_features={self.out_features}, reduction={self.reduction}"
