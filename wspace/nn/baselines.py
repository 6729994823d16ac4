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

from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..spec import WeightSpaceSpec
from .common import MLPHead
from .encoder import Encoder

__all__ = ["FlatMLP", "StatNN", "weight_statistics"]

DEFAULT_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


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


class FlatMLP(Encoder):
    """Flattened weights -> MLP: ``FlatMLP(spec, out_features=k)(ws) -> [B, k]``.

    :meth:`features` is ``ws.flatten()`` ``[B, num_params]`` (no symmetry: ``symmetry = "none"``).

    Args:
        spec: the architecture.
        out_features: ``k``.
        hidden / layers / activation: the MLP (``layers`` linear layers).
    """

    symmetry = "none"

    def __init__(self, spec: WeightSpaceSpec, out_features: int, *, hidden: int = 256, layers: int = 3, activation: str = "relu"):
        super().__init__(spec, out_features)
        self.head = MLPHead(spec.num_params, out_features, hidden, layers, activation)

    def features(self, ws: WeightSpace) -> torch.Tensor:
        """``ws.flatten()``: ``[B, num_params]``."""
        self.check_input(ws)
        return ws.flatten()


class StatNN(Encoder):
    """Per-tensor statistics -> MLP: ``StatNN(spec, out_features=k)(ws) -> [B, k]``.

    :meth:`features` are the statistics ``[B, num_statistics]`` (:func:`weight_statistics`),
    invariant to any reordering of a tensor's entries (``symmetry = "tensor_entries"``).

    Args:
        spec: the architecture.
        out_features: ``k``.
        hidden / layers / activation: the MLP.
        quantiles: the quantiles computed per tensor (default 0, .25, .5, .75, 1).
    """

    symmetry = "tensor_entries"

    def __init__(
        self, spec: WeightSpaceSpec, out_features: int, *, hidden: int = 128, layers: int = 3, activation: str = "relu",
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ):
        super().__init__(spec, out_features)
        if not quantiles or any(not 0.0 <= q <= 1.0 for q in quantiles):
            raise WeightSpaceError(f"quantiles must be a non-empty list of numbers in [0, 1], got {list(quantiles)}")
        self.quantiles = tuple(float(q) for q in quantiles)
        self.num_statistics = len(spec.params) * (2 + len(self.quantiles))
        self.head = MLPHead(self.num_statistics, out_features, hidden, layers, activation)

    def features(self, ws: WeightSpace) -> torch.Tensor:
        """The statistics ``[B, num_statistics]`` (see :func:`weight_statistics`)."""
        self.check_input(ws)
        return weight_statistics(ws, self.quantiles)

    def statistics(self, ws: WeightSpace) -> torch.Tensor:
        """Alias of :meth:`features`."""
        return self.features(ws)
