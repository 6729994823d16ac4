"""Non-equivariant baselines: flattened weights -> MLP, and per-tensor statistics -> MLP.

* :class:`FlatMLP`: ``ws.flatten()`` ``[B, D]`` -> MLP. Not invariant to anything: the
  usual lower bound that shows what the symmetry buys.
* :class:`StatNN` (Unterthiner et al., 2020, "Predicting Neural Network Accuracy from
  Weights"): for every weight and bias tensor its mean, variance and quantiles
  (0, 25, 50, 75, 100 %) -> MLP. Invariant to all neuron permutations (and any other
  reordering of a tensor's entries), by construction.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..spec import WeightSpaceSpec
from .common import MLPHead, check_positive

__all__ = ["FlatMLP", "StatNN", "weight_statistics"]

DEFAULT_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _check(spec: WeightSpaceSpec, ws: WeightSpace) -> None:
    if not isinstance(ws, WeightSpace):
        raise WeightSpaceError(f"expected a WeightSpace, got {type(ws).__name__}")
    if not (ws.spec is spec or ws.spec.same_space(spec)):
        raise WeightSpaceError(f"this module was built for {spec!r}, but got networks of {ws.spec!r}")


def weight_statistics(ws: WeightSpace, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> torch.Tensor:
    """``[B, n_tensors * (2 + len(quantiles))]``: per tensor, mean, variance and quantiles.

    Variance is the population variance (0 for single-entry tensors, never NaN).
    """
    q = torch.tensor(list(quantiles), dtype=ws.dtype, device=ws.device)
    feats = []
    for t in ws.tensors:
        flat = t.reshape(t.shape[0], -1)
        feats.append(flat.mean(1, keepdim=True))
        feats.append(flat.var(1, correction=0, keepdim=True))
        feats.append(torch.quantile(flat, q, dim=1).T)  # [B, n_quantiles]
    return torch.cat(feats, 1)


class FlatMLP(nn.Module):
    """Flattened weights -> MLP: ``FlatMLP(spec, out_features=k)(ws) -> [B, k]``.

    Args:
        spec: the architecture.
        out_features: ``k``.
        hidden / layers / activation: the MLP (``layers`` linear layers).
    """

    def __init__(self, spec: WeightSpaceSpec, out_features: int, *, hidden: int = 256, layers: int = 3, activation: str = "relu"):
        super().__init__()
        check_positive(out_features=out_features)
        self.spec, self.out_features = spec, out_features
        self.mlp = MLPHead(spec.num_params, out_features, hidden, layers, activation)

    def forward(self, ws: WeightSpace) -> torch.Tensor:
        _check(self.spec, ws)
        return self.mlp(ws.flatten())


class StatNN(nn.Module):
    """Per-tensor statistics -> MLP: ``StatNN(spec, out_features=k)(ws) -> [B, k]``.

    Args:
        spec: the architecture.
        out_features: ``k``.
        hidden / layers / activation: the MLP.
        quantiles: the quantiles computed per tensor (default 0, .25, .5, .75, 1).
    """

    def __init__(
        self, spec: WeightSpaceSpec, out_features: int, *, hidden: int = 128, layers: int = 3, activation: str = "relu",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ):
        super().__init__()
        check_positive(out_features=out_features)
        if not quantiles or any(not 0.0 <= q <= 1.0 for q in quantiles):
            raise WeightSpaceError(f"quantiles must be a non-empty list of numbers in [0, 1], got {list(quantiles)}")
        self.spec, self.out_features = spec, out_features
        self.quantiles = tuple(float(q) for q in quantiles)
        self.num_statistics = len(spec.params) * (2 + len(self.quantiles))
        self.mlp = MLPHead(self.num_statistics, out_features, hidden, layers, activation)

    def statistics(self, ws: WeightSpace) -> torch.Tensor:
        """The input features ``[B, num_statistics]`` (see :func:`weight_statistics`)."""
        _check(self.spec, ws)
        return weight_statistics(ws, self.quantiles)

    def forward(self, ws: WeightSpace) -> torch.Tensor:
        return self.mlp(self.statistics(ws))
