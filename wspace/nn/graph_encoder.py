"""Neural-graph encoders: a GNN over :func:`wspace.graph.to_graph` (NG-GNN style).

Kofinas et al. (ICLR 2024) represent a network as the graph of its neurons (node
feature = bias, edge feature = weight, conv kernels flattened into the edge feature,
residual links as identity edges) and process it with a GNN whose edges are updated
in every layer. Here:

* :class:`NeuralGraphEmbedding`: lifts the raw graph to ``hidden`` channels. Node
  embeddings break only the symmetries that the network does not have: one learned
  vector per network input unit and per output unit (their order matters), one per
  hidden *layer* (never per neuron: hidden neurons stay permutable). Edges get a
  linear map of their (padded) kernel plus an edge-type vector (weight / residual).
* :class:`~wspace.nn.graph_conv.NeuralGraphConv` layers (edge update, bidirectional
  mean+max aggregation, node update).
* :class:`NeuralGraphEncoder`: invariant readout (mean and max over nodes and edges
  of each graph) and an MLP head -> ``[B, k]``.
* :class:`EquivariantNeuralGraphEncoder`: per-node and per-edge linear heads read
  back as a :class:`~wspace.WeightSpace` with :func:`wspace.graph.from_graph`.

Both accept a ``WeightSpace`` (converted with ``to_graph``) or a PyG ``Batch`` / ``Data``
made by ``to_graph``; the invariant encoder also takes batches that concatenate
graphs of different architectures (``Batch.from_data_list``), since every
architecture-dependent quantity is read from the graph itself. Everything is
vectorized: gathers, scatters and per-node / per-edge matmuls over the whole batch.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence, Union

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from ..errors import WeightSpaceError
from ..graph import EDGE_RESIDUAL, NODE_INPUT, NODE_OUTPUT, from_graph, kernel_map, normalize_kernel, to_graph
from ..space import WeightSpace
from ..spec import WeightSpaceSpec
from .aggregation import scatter_reduce
from .common import MLPHead, check_positive
from .encoder import Encoder, EquivariantEncoder
from .graph_conv import NeuralGraphConv

__all__ = ["NeuralGraphEmbedding", "NeuralGraphBody", "NeuralGraphEncoder", "EquivariantNeuralGraphEncoder"]

GraphInput = Union[WeightSpace, Batch, Data]
KernelArg = Union[int, Sequence[int], None]
DEFAULT_MAX_LAYERS = 16
_POOLS = ("mean", "max", "sum")
_GRAPH_KEYS = ("x", "edge_index", "edge_attr", "node_type", "node_pos", "node_layer", "edge_type")


def _edge_width(hidden: int, edge_hidden: int | None) -> int:
    # Edges outnumber nodes ~10:1 and carry one scalar (or kernel) each: half the node
    # width costs little accuracy and nearly halves the time per layer.
    return max(hidden // 2, 1) if edge_hidden is None else edge_hidden


def _kernel_shape(spec: WeightSpaceSpec | None, max_kernel: KernelArg) -> tuple[int, ...]:
    if spec is not None:
        return normalize_kernel(spec, max_kernel)
    if max_kernel is None:
        return ()
    if isinstance(max_kernel, int):
        raise WeightSpaceError(f"max_kernel={max_kernel} needs a spec (for its conv dims); give a tuple")
    return tuple(int(k) for k in max_kernel)


class NeuralGraphEmbedding(nn.Module):
    """Initial node and edge features of neural graphs.

    Node ``v``: ``W_b * bias_v + E[slot(v)]`` where ``slot`` is the input unit index for
    input neurons, ``max_inputs + unit index`` for output neurons and
    ``max_inputs + max_outputs + min(layer, max_layers - 1)`` for hidden neurons (hidden
    neurons of layers beyond the table share its last row). Edge: ``W_e * kernel +
    T[edge_type]``.

    Args:
        channels / edge_channels: output sizes.
        kernel_size: ``K``, the width of ``edge_attr`` it reads.
        max_inputs / max_outputs: sizes of the input / output unit tables; graphs with
            more input or output units are refused (their order carries meaning).
        max_layers: size of the hidden-layer table.
    """

    def __init__(
        self, channels: int, edge_channels: int, kernel_size: int, *, max_inputs: int, max_outputs: int,
        max_layers: int = DEFAULT_MAX_LAYERS,
    ):
        super().__init__()
        check_positive(channels=channels, edge_channels=edge_channels, kernel_size=kernel_size,
                       max_inputs=max_inputs, max_outputs=max_outputs, max_layers=max_layers)
        self.max_inputs, self.max_outputs, self.max_layers = max_inputs, max_outputs, max_layers
        self.kernel_size = kernel_size
        self.bias_lin = nn.Linear(1, channels)
        self.slots = nn.Embedding(max_inputs + max_outputs + max_layers, channels)
        self.edge_lin = nn.Linear(kernel_size, edge_channels)
        self.edge_types = nn.Embedding(2, edge_channels)

    def node_slots(self, node_type: torch.Tensor, node_pos: torch.Tensor, node_layer: torch.Tensor) -> torch.Tensor:
        """``[N]`` row of the slot table of every node (see class docstring)."""
        hidden = self.max_inputs + self.max_outputs + node_layer.clamp(0, self.max_layers - 1)
        out = torch.where(node_type == NODE_OUTPUT, self.max_inputs + node_pos, hidden)
        return torch.where(node_type == NODE_INPUT, node_pos, out)

    def check_io(self, node_type: torch.Tensor, node_pos: torch.Tensor) -> None:
        """Refuse graphs whose input / output unit indices exceed the tables."""
        n_in = int(node_pos[node_type == NODE_INPUT].max().item()) + 1 if bool((node_type == NODE_INPUT).any()) else 0
        n_out = int(node_pos[node_type == NODE_OUTPUT].max().item()) + 1 if bool((node_type == NODE_OUTPUT).any()) else 0
        self.check_sizes(n_in, n_out)

    def check_sizes(self, n_in: int, n_out: int) -> None:
        if n_in > self.max_inputs or n_out > self.max_outputs:
            raise WeightSpaceError(
                f"graph has networks with {n_in} input / {n_out} output units, but the encoder was built for at most "
                f"{self.max_inputs} / {self.max_outputs}; build it with max_inputs= / max_outputs="
            )

    def forward(self, graph: Batch | Data, edge_attr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slot = self.node_slots(graph.node_type, graph.node_pos, graph.node_layer)
        x = self.bias_lin(graph.x.to(self.bias_lin.weight.dtype)) + self.slots(slot)
        e = self.edge_lin(edge_attr.to(self.edge_lin.weight.dtype))
        e = e + self.edge_types((graph.edge_type == EDGE_RESIDUAL).long())
        return x, e


class NeuralGraphBody(nn.Module):
    """Embedding + ``layers`` :class:`NeuralGraphConv` layers: graph -> ``(x [N, d], e [E, d_e])``.

    Takes care of the input side shared by both encoders: ``WeightSpace`` -> graph,
    edge features narrower than the encoder's kernel (padded, centered, like
    ``to_graph`` pads kernels), and I/O table size checks.
    """

    def __init__(
        self, spec: WeightSpaceSpec | None, *, hidden: int, edge_hidden: int | None, layers: int,
        aggr: str | Sequence[str], activation: str, bidirectional: bool, dropout: float, max_kernel: KernelArg,
        max_inputs: int | None, max_outputs: int | None, max_layers: int | None,
    ):
        super().__init__()
        check_positive(layers=layers)
        self.spec = spec
        self.kernel_shape = _kernel_shape(spec, max_kernel)
        self.kernel_size = math.prod(self.kernel_shape)
        if spec is None and (max_inputs is None or max_outputs is None):
            raise WeightSpaceError("without a spec, give max_inputs and max_outputs")
        edge_hidden = _edge_width(hidden, edge_hidden)
        self.embed = NeuralGraphEmbedding(
            hidden, edge_hidden, self.kernel_size,
            max_inputs=spec.in_features if max_inputs is None else max_inputs,
            max_outputs=spec.out_features if max_outputs is None else max_outputs,
            max_layers=max(DEFAULT_MAX_LAYERS, len(spec.layers)) if max_layers is None else max_layers,
        )
        self.convs = nn.ModuleList(
            NeuralGraphConv(hidden, edge_hidden, aggr=aggr, activation=activation, bidirectional=bidirectional,
                            dropout=dropout)
            for _ in range(layers)
        )
        self._pad_maps: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}

    # ------------------------------------------------------------------ inputs
    def to_graph(self, ws: WeightSpace) -> Batch:
        """``ws`` as graphs whose ``edge_attr`` has this encoder's kernel width."""
        self.embed.check_sizes(ws.spec.in_features, ws.spec.out_features)
        if not self.kernel_shape:
            return to_graph(ws)
        dims = max((len(l.kernel) for l in ws.spec.layers), default=0)
        if dims and dims != len(self.kernel_shape):
            raise WeightSpaceError(
                f"the networks have {dims}-d convolutions but the encoder's kernel shape is {self.kernel_shape}"
            )
        return to_graph(ws, max_kernel=self.kernel_shape)

    def as_graph(self, inp: GraphInput) -> Batch | Data:
        if isinstance(inp, WeightSpace):
            return self.to_graph(inp)
        if not isinstance(inp, Data):  # Batch is a Data subclass
            raise WeightSpaceError(
                f"expected a WeightSpace or a torch_geometric Batch / Data from wspace.graph.to_graph, got "
                f"{type(inp).__name__}"
            )
        missing = [k for k in _GRAPH_KEYS if getattr(inp, k, None) is None]
        if missing:
            raise WeightSpaceError(f"graph lacks {', '.join(missing)}; build it with wspace.graph.to_graph")
        self.embed.check_io(inp.node_type, inp.node_pos)
        return inp

    def kernel_positions(self, graph: Batch | Data) -> torch.Tensor | None:
        """``[K_data]``: where each column of ``graph.edge_attr`` sits in the encoder's
        kernel (``None`` when the widths agree)."""
        k_data = graph.edge_attr.shape[1]
        if k_data == self.kernel_size:
            return None
        ks = getattr(graph, "kernel_shape", None)
        shape = tuple(ks.reshape(-1, ks.shape[-1])[0].tolist()) if ks is not None and ks.numel() else ()
        fits = (
            math.prod(shape) == k_data
            and (all(k == 1 for k in shape) or len(shape) == len(self.kernel_shape))
            and all(a <= b for a, b in zip(shape, self.kernel_shape))
        )
        if not fits:
            raise WeightSpaceError(
                f"graph edge_attr has {k_data} columns (kernel shape {shape}) but the encoder reads kernels of shape "
                f"{self.kernel_shape} ({self.kernel_size} columns); build the encoder with max_kernel= covering "
                f"the largest kernel, or the graphs with to_graph(ws, max_kernel={self.kernel_shape})"
            )
        key = (shape, str(graph.edge_attr.device))
        if key not in self._pad_maps:
            kmap = kernel_map(() if all(k == 1 for k in shape) else shape, self.kernel_shape)
            pos = torch.empty(k_data, dtype=torch.long)
            valid = kmap >= 0
            pos[kmap[valid]] = torch.arange(self.kernel_size)[valid]
            self._pad_maps[key] = pos.to(graph.edge_attr.device)
        return self._pad_maps[key]

    # ------------------------------------------------------------------ forward
    def forward(self, graph: Batch | Data) -> tuple[torch.Tensor, torch.Tensor]:
        edge_attr = graph.edge_attr
        pos = self.kernel_positions(graph)
        if pos is not None:
            padded = edge_attr.new_zeros(edge_attr.shape[0], self.kernel_size)
            edge_attr = padded.index_copy(1, pos, edge_attr)
        x, e = self.embed(graph, edge_attr)
        for conv in self.convs:
            x, e = conv(x, graph.edge_index, e)
        return x, e


def _graph_batch(graph: Batch | Data) -> tuple[torch.Tensor, int]:
    """Node-to-graph index and number of graphs (a lone ``Data`` is one graph)."""
    b = getattr(graph, "batch", None)
    if b is None:
        return torch.zeros(graph.x.shape[0], dtype=torch.long, device=graph.x.device), 1
    return b, int(graph.num_graphs)


class EquivariantNeuralGraphEncoder(EquivariantEncoder):
    """Equivariant neural-graph GNN ``WeightSpace -> WeightSpace`` (same spec), e.g. for editing.

    The body of :class:`NeuralGraphEncoder`, then a linear map of every node's features to
    its new bias and of every edge's features to its new (padded) kernel, read back with
    :func:`wspace.graph.from_graph` (residual edges and padding are dropped). With
    ``residual=True`` the output is ``ws + gamma * f(ws)`` (``gamma`` learned, initialized
    to ``residual_init``).

    Input: a ``WeightSpace`` of ``spec`` or a ``Batch`` of its graphs from ``to_graph``.
    Args as :class:`NeuralGraphEncoder` (no head / pooling).
    """

    def __init__(
        self, spec: WeightSpaceSpec, *, hidden: int = 32, edge_hidden: int | None = None, layers: int = 3,
        aggr: str | Sequence[str] = ("mean", "max"), activation: str = "relu", dropout: float = 0.0,
        bidirectional: bool = True, max_kernel: KernelArg = None, max_layers: int | None = None,
        residual: bool = False, residual_init: float = 1e-2,
    ):
        super().__init__(spec, residual=residual, residual_init=residual_init)
        self.body = NeuralGraphBody(
            spec, hidden=hidden, edge_hidden=edge_hidden, layers=layers, aggr=aggr, activation=activation,
            bidirectional=bidirectional, dropout=dropout, max_kernel=max_kernel, max_inputs=None, max_outputs=None,
            max_layers=max_layers,
        )
        edge_hidden = _edge_width(hidden, edge_hidden)
        self.node_out = nn.Linear(hidden, 1)
        self.edge_out = nn.Linear(edge_hidden, self.body.kernel_size)

    def check_input(self, inp: GraphInput) -> None:
        """A ``WeightSpace`` of ``spec``, or graphs (checked when read back with ``from_graph``)."""
        if isinstance(inp, WeightSpace) and inp.spec != self.spec:
            raise WeightSpaceError(f"expected networks of {self.spec!r}, got {inp.spec!r}")

    def delta(self, inp: WeightSpace | Batch) -> WeightSpace:
        """The equivariant map ``f`` of a ``WeightSpace`` of ``spec`` or of a ``Batch`` of its graphs."""
        graph = self.body.as_graph(inp)
        x, e = self.body(graph)
        bias, kernel = self.node_out(x), self.edge_out(e)
        pos = self.body.kernel_positions(graph)
        if pos is not None:  # back to the graph's own kernel width
            kernel = kernel.index_select(1, pos)
        out = copy.copy(graph)  # shares the structure tensors; only x / edge_attr are replaced
        out.x, out.edge_attr = bias, kernel
        return from_graph(out, self.spec)

    def forward(self, inp: WeightSpace | Batch) -> WeightSpace:
        """Edited networks (``WeightSpace`` of ``spec``) of a ``WeightSpace`` or a ``Batch`` of its graphs."""
        self.check_input(inp)
        delta = self.delta(inp)
        if not self.residual:
            return delta
        return self.add_residual(inp if isinstance(inp, WeightSpace) else from_graph(inp, self.spec), delta)


class NeuralGraphEncoder(Encoder):
    """Invariant neural-graph GNN: ``NeuralGraphEncoder(spec, out_features=k)(ws) -> [B, k]``.

    Args:
        spec: the architecture it is built for; sets the default kernel width and I/O
            table sizes. May be ``None`` (then give ``max_inputs`` / ``max_outputs``).
        out_features: ``k``.
        hidden / edge_hidden: node / edge channels (``edge_hidden`` defaults to ``hidden // 2``).
        layers: number of :class:`~wspace.nn.graph_conv.NeuralGraphConv` layers.
        head_hidden / head_layers: the MLP after pooling.
        aggr: message aggregators (PyG names), concatenated.
        pool: graph readout reductions over nodes (and edges), concatenated.
        pool_edges: also pool the edge features.
        activation, dropout, bidirectional: see :class:`~wspace.nn.graph_conv.NeuralGraphConv`.
        max_kernel: the kernel shape edge features are padded to (as in
            :func:`wspace.graph.to_graph`; default the spec's largest kernel). Set it to the
            largest kernel of every architecture the encoder will see.
        max_inputs / max_outputs: I/O position tables (default the spec's sizes).
        max_layers: hidden-layer table size (default ``max(16, depth)``; deeper layers
            share the last row).

    Input: a ``WeightSpace`` of any spec within the limits, or a ``Batch`` / ``Data`` from
    ``to_graph`` (possibly mixing architectures). Invariant to hidden-neuron
    permutations (residual streams included); sensitive to input / output unit order.
    :meth:`features` is the pooled readout ``[B, len(pool) * (hidden + edge_hidden)]``.
    """

    equivariant = EquivariantNeuralGraphEncoder
    invariant_only_options = ("head_hidden", "head_layers", "pool", "pool_edges", "max_inputs", "max_outputs")

    def __init__(
        self, spec: WeightSpaceSpec | None, out_features: int, *, hidden: int = 32, edge_hidden: int | None = None,
        layers: int = 3, head_hidden: int = 128, head_layers: int = 2, aggr: str | Sequence[str] = ("mean", "max"),
        pool: str | Sequence[str] = ("mean", "max"), pool_edges: bool = True, activation: str = "relu",
        dropout: float = 0.0, bidirectional: bool = True, max_kernel: KernelArg = None,
        max_inputs: int | None = None, max_outputs: int | None = None, max_layers: int | None = None,
    ):
        super().__init__(spec, out_features)
        self.pool = (pool,) if isinstance(pool, str) else tuple(pool)
        if not self.pool or any(p not in _POOLS for p in self.pool):
            raise WeightSpaceError(f"pool must be a non-empty subset of {_POOLS}, got {pool!r}")
        self.pool_edges = pool_edges
        self.body = NeuralGraphBody(
            spec, hidden=hidden, edge_hidden=edge_hidden, layers=layers, aggr=aggr, activation=activation,
            bidirectional=bidirectional, dropout=dropout, max_kernel=max_kernel, max_inputs=max_inputs,
            max_outputs=max_outputs, max_layers=max_layers,
        )
        edge_hidden = _edge_width(hidden, edge_hidden)
        width = len(self.pool) * (hidden + (edge_hidden if pool_edges else 0))
        self.head = MLPHead(width, out_features, head_hidden, head_layers, activation)

    def check_input(self, inp: GraphInput) -> None:
        """Any architecture within the encoder's limits, as a ``WeightSpace`` or a graph
        (checked by :meth:`NeuralGraphBody.as_graph`)."""

    def hidden_features(self, inp: GraphInput) -> tuple[Batch | Data, torch.Tensor, torch.Tensor]:
        """``(graph, node features [N, hidden], edge features [E, edge_hidden])``: equivariant."""
        graph = self.body.as_graph(inp)
        x, e = self.body(graph)
        return graph, x, e

    def features(self, inp: GraphInput) -> torch.Tensor:
        """The pooled invariant embedding ``[B, width]`` (before the head)."""
        graph, x, e = self.hidden_features(inp)
        batch, B = _graph_batch(graph)
        parts = [scatter_reduce(x, batch, B, r) for r in self.pool]
        if self.pool_edges:
            ebatch = batch.index_select(0, graph.edge_index[0])
            parts += [scatter_reduce(e, ebatch, B, r) for r in self.pool]
        return torch.cat(parts, dim=1)

    def forward(self, inp: GraphInput) -> torch.Tensor:
        """``[B, out_features]`` of a ``WeightSpace`` or of graphs from ``to_graph``."""
        return self.head(self.features(inp))
