"""NeuralGraphConv: message passing on neural graphs with edge features updated per layer.

One layer of the Neural Graphs GNN (Kofinas et al., ICLR 2024; PNA-style backbone with
edge updates), on the graphs of :func:`wspace.graph.to_graph`:

* edge update: ``e' = LN(e + W_2 act(W_s x_src + W_d x_dst + W_e e))`` (an MLP over
  ``[x_src, x_dst, e]``; the node projections are applied per node and gathered, which
  is cheaper than concatenating per edge since graphs have far more edges than nodes);
* messages are the updated edge features, aggregated at the target (forward
  direction) and, with ``bidirectional=True``, at the source (backward direction) with
  PyG aggregators (default ``("mean", "max")``, concatenated: PNA-like);
* node update: ``x' = LN(x + MLP([x, agg_in, agg_out]))``.

Every operation is per node, per edge or a scatter over edges, so the layer is
equivariant to any relabeling of the nodes (in particular hidden-neuron permutations)
and runs unchanged on batches mixing graphs of different architectures.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from .aggregation import REDUCES, FastAggregation
from .common import check_positive, make_activation

__all__ = ["NeuralGraphConv"]


class NeuralGraphConv(MessagePassing):
    """Node and edge update on a directed graph: ``(x, edge_index, edge_attr) -> (x', edge_attr')``.

    Args:
        channels: node feature size ``d``.
        edge_channels: edge feature size (default ``channels``).
        aggr: PyG aggregation name (or ``Aggregation``) or a list of them (concatenated),
            e.g. ``"mean"``, ``("mean", "max")`` (default), ``("mean", "max", "std")``;
            ``sum`` / ``mean`` / ``max`` use :class:`~wspace.nn.aggregation.FastAggregation`.
        activation: hidden activation of the edge and node MLPs.
        bidirectional: also aggregate each edge at its source node (information flows
            backwards through the network, e.g. from the outputs to the inputs).
        dropout: dropout on the edge and node MLP hidden units.

    Shapes: ``x`` ``[N, d]``, ``edge_index`` ``[2, E]`` (row 0 = source), ``edge_attr``
    ``[E, edge_channels]`` -> ``([N, d], [E, edge_channels])``.
    """

    def __init__(
        self, channels: int, edge_channels: int | None = None, *, aggr: str | Sequence[str] = ("mean", "max"),
        activation: str = "relu", bidirectional: bool = True, dropout: float = 0.0,
    ):
        aggrs = [aggr] if isinstance(aggr, str) else list(aggr)
        # sum / mean / max: the fast index_add-based versions (same results as PyG's)
        modules = [FastAggregation(a) if isinstance(a, str) and a in REDUCES else a for a in aggrs]
        super().__init__(aggr=modules[0] if len(modules) == 1 else modules)
        edge_channels = channels if edge_channels is None else edge_channels
        check_positive(channels=channels, edge_channels=edge_channels)
        self.channels, self.edge_channels, self.bidirectional = channels, edge_channels, bidirectional
        self.num_aggrs = len(aggrs)
        self.lin_src = nn.Linear(channels, edge_channels, bias=False)
        self.lin_dst = nn.Linear(channels, edge_channels, bias=False)
        self.lin_edge = nn.Linear(edge_channels, edge_channels)
        self.edge_out = nn.Linear(edge_channels, edge_channels)
        self.edge_norm = nn.LayerNorm(edge_channels)
        agg_width = self.num_aggrs * edge_channels * (2 if bidirectional else 1)
        self.node_mlp = nn.Sequential(
            nn.Linear(channels + agg_width, channels), make_activation(activation), nn.Dropout(dropout),
            nn.Linear(channels, channels),
        )
        self.node_norm = nn.LayerNorm(channels)
        self.act = make_activation(activation)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index[0], edge_index[1]
        n = x.shape[0]
        h = self.lin_src(x).index_select(0, src) + self.lin_dst(x).index_select(0, dst) + self.lin_edge(edge_attr)
        e = self.edge_norm(edge_attr + self.edge_out(self.dropout(self.act(h))))
        parts = [x, self.propagate(edge_index, msg=e, size=(n, n))]
        if self.bidirectional:
            parts.append(self.propagate(edge_index.flip(0), msg=e, size=(n, n)))
        x = self.node_norm(x + self.node_mlp(torch.cat(parts, dim=1)))
        return x, e

    def message(self, msg: torch.Tensor) -> torch.Tensor:  # the updated edge feature is the message
        return msg

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.channels}, edge_channels={self.edge_channels}, aggr={self.aggr_module}, "
            f"bidirectional={self.bidirectional})"
        )
