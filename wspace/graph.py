"""Neural-graph view of a :class:`WeightSpace` (Neural Graphs, Kofinas et al. 2024).

``to_graph(ws)`` turns B networks into one ``torch_geometric.data.Batch`` of B
:class:`NeuralGraph` s (a ``Data`` subclass that carries its own batching rules):

* one node per neuron: the network inputs, then the output neurons of each
  parametric layer in ``spec.layers`` order (a conv channel is one neuron). A
  residual block's sum is identified with the output neurons of the block's last
  layer, which write into the stream;
* node feature ``x`` ``[num_nodes, 1]`` = the neuron's bias (0 for inputs and for
  layers without bias), plus long node attributes ``node_layer`` (0 = input,
  ``l + 1`` = output of layer ``l``), ``node_type`` (0 input, 1 hidden, 2 output),
  ``node_pos`` (input / output unit index, -1 for hidden neurons) and
  ``node_group`` (permutation group id, -1 for fixed neurons);
* one edge per (input neuron, output neuron) pair of every layer, directed along
  the forward pass, with ``edge_attr`` ``[num_edges, K]`` = the weight: conv kernels
  flattened after zero-padding them, centered, into the largest kernel shape
  (``K`` = its number of entries; a linear layer is a 1x1 kernel at the center);
  ``edge_layer`` (layer index, -1 for residual edges) and ``edge_type`` (0 weight,
  1 residual identity);
* residual links as identity edges (1 at the kernel center) from each neuron of
  the block's input to the same neuron of the block's output;
* a graph-level ``kernel_shape`` ``[1, d]`` (``[B, d]`` batched): the padded kernel
  shape, so that ``from_graph`` can undo the padding.

Everything is a gather through index buffers cached per spec (:func:`graph_layout`);
no Python step per neuron or edge. The structure of a batch (``edge_index``, the
``node_*`` / ``edge_*`` attributes, ``batch``, ``ptr``, ``kernel_shape``) is batched once
per batch size by PyG itself (``Batch.from_data_list`` of structure-only
:class:`NeuralGraph` s, :meth:`GraphLayout.template`), memoized and shared between
calls: treat it as read-only (only ``x`` and ``edge_attr`` are new tensors on each
call). So ``to_data_list()``, ``batch[i]`` and ``DataLoader`` re-batching work, and graphs
of different specs mix with ``Batch.from_data_list`` when built with one ``max_kernel``.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence, Union

import torch
from torch_geometric.data import Batch, Data

from .errors import WeightSpaceError
from .space import WeightSpace
from .spec import Op, WeightSpaceSpec

__all__ = [
    "NeuralGraph", "GraphLayout", "graph_layout", "to_graph", "from_graph", "clear_cache", "kernel_map",
    "normalize_kernel", "NODE_INPUT", "NODE_HIDDEN", "NODE_OUTPUT", "EDGE_WEIGHT", "EDGE_RESIDUAL",
]

NODE_INPUT, NODE_HIDDEN, NODE_OUTPUT = 0, 1, 2
EDGE_WEIGHT, EDGE_RESIDUAL = 0, 1

KernelArg = Union[int, Sequence[int], None]

# Node- and edge-level attributes, in the order they are stored on each graph.
_NODE_KEYS = ("node_layer", "node_type", "node_pos", "node_group")
_EDGE_KEYS = ("edge_layer", "edge_type")
_BATCHED_CACHE = 4  # (batch size, device) templates kept per layout: train / eval batches and their last, partial ones


class NeuralGraph(Data):
    """One network's neural graph (see the module docstring), with its own batching rules.

    Attributes: ``x`` ``[N, 1]`` (biases), ``edge_index`` ``[2, E]``, ``edge_attr``
    ``[E, K]`` (padded kernels), node attributes ``node_layer`` / ``node_type`` /
    ``node_pos`` / ``node_group`` ``[N]``, edge attributes ``edge_layer`` / ``edge_type``
    ``[E]`` and the graph-level ``kernel_shape`` ``[1, d]``.

    Batching (``Batch.from_data_list``, PyG ``DataLoader``): ``edge_index`` is offset by
    the number of nodes of the graphs before it and concatenated along its last axis;
    every other attribute is concatenated along its first axis and never offset: the
    layer, type, position and group attributes are indices *within* their own network
    (layer ``l`` of graph 2 stays ``l``), and ``kernel_shape`` stacks to ``[B, d]``.
    Graphs of different architectures batch together when they share one ``K``.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "edge_index":
            return self.num_nodes
        if key in _NODE_KEYS or key in _EDGE_KEYS or key in ("x", "edge_attr", "kernel_shape"):
            return 0
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "edge_index":
            return -1
        if key in _NODE_KEYS or key in _EDGE_KEYS or key in ("x", "edge_attr", "kernel_shape"):
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)


@dataclass(eq=False)
class GraphLayout:
    """Per-spec structure of the neural graph, shared by every network of the spec.

    Attributes:
        spec: the architecture.
        kernel_shape: the padded kernel shape (``()`` for MLPs without ``max_kernel``).
        num_nodes / num_edges: per graph.
        node_slices: per neuron set (0 = inputs, ``l + 1`` = outputs of layer ``l``),
            its ``(start, stop)`` node range.
        edge_slices: per layer, its ``(start, stop)`` edge range; residual edges follow
            the last layer's edges.
        edge_index: ``[2, num_edges]`` (source = layer input neuron, target = output neuron).
        node_layer, node_type, node_pos, node_group: ``[num_nodes]`` long.
        edge_layer, edge_type: ``[num_edges]`` long.
        node_gather: ``[num_nodes]`` index into ``[flat | 0 | 1]`` (``flat`` = ``ws.flatten()``).
        edge_gather: ``[num_edges, K]`` index into the same.
        inverse: ``[num_params]``: where each flat parameter sits in
            ``cat([edge_attr.view(B, E * K), x.view(B, N)], 1)``.
    """

    spec: WeightSpaceSpec
    kernel_shape: tuple[int, ...]
    num_nodes: int
    num_edges: int
    node_slices: tuple[tuple[int, int], ...]
    edge_slices: tuple[tuple[int, int], ...]
    edge_index: torch.Tensor
    node_layer: torch.Tensor
    node_type: torch.Tensor
    node_pos: torch.Tensor
    node_group: torch.Tensor
    edge_layer: torch.Tensor
    edge_type: torch.Tensor
    node_gather: torch.Tensor
    edge_gather: torch.Tensor
    inverse: torch.Tensor
    _on_device: dict = field(default_factory=dict, repr=False)
    _batched: "OrderedDict[tuple[int, str], Batch]" = field(default_factory=OrderedDict, repr=False)

    @property
    def kernel_size(self) -> int:
        """``K``: the width of ``edge_attr``."""
        return math.prod(self.kernel_shape)

    def tensors(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The per-graph index tensors on ``device`` (memoized: moved once per device)."""
        key = str(torch.device(device))
        if key not in self._on_device:
            names = ("edge_index",) + _NODE_KEYS + _EDGE_KEYS + ("node_gather", "edge_gather", "inverse")
            self._on_device[key] = {n: getattr(self, n).to(device) for n in names}
        return self._on_device[key]

    def graph(self, device: torch.device | str = "cpu") -> NeuralGraph:
        """The structure of one network's graph on ``device``: a :class:`NeuralGraph` whose
        ``x`` ``[N, 0]`` and ``edge_attr`` ``[E, 0]`` are empty placeholders (no values)."""
        t = self.tensors(device)
        return NeuralGraph(
            x=t["node_gather"].new_empty(self.num_nodes, 0, dtype=torch.float32), edge_index=t["edge_index"],
            edge_attr=t["edge_index"].new_empty(self.num_edges, 0, dtype=torch.float32),
            **{k: t[k] for k in _NODE_KEYS + _EDGE_KEYS},
            kernel_shape=torch.tensor(self.kernel_shape, dtype=torch.long, device=device).reshape(1, -1),
        )

    def template(self, batch_size: int, device: torch.device | str) -> Batch:
        """The structure of ``batch_size`` graphs, batched by PyG (``Batch.from_data_list`` of
        :meth:`graph`): ``edge_index`` offset per graph, the node / edge attributes tiled,
        ``batch``, ``ptr``, ``kernel_shape`` ``[B, d]``; ``x`` / ``edge_attr`` are empty
        placeholders that :func:`to_graph` replaces (on a shallow copy).

        Memoized for the last few (batch size, device) pairs: building it takes most of
        ``to_graph``'s time, and it only depends on the spec. The graphs of ``to_graph``
        share its tensors, so treat them as read-only.
        """
        key = (int(batch_size), str(torch.device(device)))
        if key in self._batched:
            self._batched.move_to_end(key)
            return self._batched[key]
        one = self.graph(device)
        out = Batch.from_data_list([copy.copy(one) for _ in range(key[0])])
        self._batched[key] = out
        while len(self._batched) > _BATCHED_CACHE:
            self._batched.popitem(last=False)
        return out


# --------------------------------------------------------------------------- layout
def _conv_dims(spec: WeightSpaceSpec) -> int:
    return max((len(l.kernel) for l in spec.layers), default=0)


def normalize_kernel(spec: WeightSpaceSpec, max_kernel: KernelArg) -> tuple[int, ...]:
    """The padded kernel shape: the elementwise largest kernel, or ``max_kernel``."""
    d = _conv_dims(spec)
    convs = [l.kernel for l in spec.layers if l.kernel]
    if max_kernel is None:
        return tuple(max(k[t] for k in convs) for t in range(d)) if convs else ()
    if isinstance(max_kernel, int):
        if d == 0 and max_kernel != 1:
            raise WeightSpaceError(
                f"max_kernel={max_kernel} is ambiguous for a spec without convolutions; give the kernel shape "
                f"as a tuple, e.g. ({max_kernel}, {max_kernel})"
            )
        shape = (max_kernel,) * d
    else:
        shape = tuple(int(k) for k in max_kernel)
    if any(k < 1 for k in shape):
        raise WeightSpaceError(f"max_kernel {shape} must be positive")
    if d and len(shape) != d:
        raise WeightSpaceError(f"max_kernel {shape} has {len(shape)} dims but the spec's kernels have {d}")
    for k in convs:
        if any(a > b for a, b in zip(k, shape)):
            raise WeightSpaceError(f"max_kernel {shape} is smaller than the spec's kernel {k}")
    return shape


def kernel_map(kernel: tuple[int, ...], padded: tuple[int, ...]) -> torch.Tensor:
    """``[prod(padded)]``: for each padded position, the flat position in ``kernel``
    (centered inside ``padded``) or -1. A linear layer (``kernel == ()``) is 1x1."""
    kernel = kernel or (1,) * len(padded)
    if not padded:
        return torch.zeros(1, dtype=torch.long)
    grids = torch.meshgrid(*[torch.arange(p) for p in padded], indexing="ij")
    flat = torch.zeros(grids[0].shape, dtype=torch.long)
    valid = torch.ones(grids[0].shape, dtype=torch.bool)
    for g, k, p in zip(grids, kernel, padded):
        q = g - (p - k) // 2  # same offset as centering a 1x1 kernel: (p - 1) // 2
        valid &= (q >= 0) & (q < k)
        flat = flat * k + q
    return torch.where(valid, flat, torch.full_like(flat, -1)).reshape(-1)


def _residual_links(ops: Sequence[Op], count: int, out: list[tuple[int, int]]) -> int:
    """Walk ``ops`` counting parametric layers; record (input set, output set) of each
    residual block (set ``s`` = the outputs of layer ``s - 1``, set 0 = network inputs)."""
    for op in ops:
        if op.kind in ("linear", "conv"):
            count += 1
        elif op.kind == "residual":
            before = count
            count = _residual_links(op.children, count, out)
            out.append((before, count))
        elif op.children:
            count = _residual_links(op.children, count, out)
    return count


@lru_cache(maxsize=32)
def _build_layout(spec: WeightSpaceSpec, kshape: tuple[int, ...]) -> GraphLayout:
    layers = spec.layers
    K = math.prod(kshape)
    D = spec.num_params
    ZERO, ONE = D, D + 1  # the two constant columns appended to the flat vector
    offsets = [0]
    for p in spec.params:
        offsets.append(offsets[-1] + p.numel)

    sizes = [spec.in_features] + [l.out_features for l in layers]
    starts = [0]
    for s in sizes:
        starts.append(starts[-1] + s)
    N = starts[-1]
    L = len(layers)
    set_ids = torch.arange(L + 1)
    size_t = torch.tensor(sizes)
    node_layer = set_ids.repeat_interleave(size_t)
    local = torch.arange(N) - torch.tensor(starts[:-1]).repeat_interleave(size_t)  # index inside its set
    node_type = torch.full((N,), NODE_HIDDEN, dtype=torch.long)
    node_type[: sizes[0]] = NODE_INPUT
    node_type[starts[L]:] = NODE_OUTPUT
    node_pos = torch.where(node_type == NODE_HIDDEN, torch.full_like(local, -1), local)
    set_group = torch.tensor([-1] + [-1 if l.out_group is None else l.out_group for l in layers])
    node_group = set_group[node_layer]
    node_gather = torch.full((N,), ZERO, dtype=torch.long)
    for l in layers:  # one step per layer, vectorized over its neurons
        if l.bias is not None:
            node_gather[starts[l.index + 1]: starts[l.index + 2]] = offsets[l.bias] + torch.arange(l.out_features)

    src, dst, e_layer, e_type, gathers, edge_slices = [], [], [], [], [], []
    e = 0
    for l in layers:
        o, i = l.out_features, l.in_features
        dst.append(starts[l.index + 1] + torch.arange(o).repeat_interleave(i))  # edge order = weight order (out, in)
        src.append(starts[l.index] + torch.arange(i).repeat(o))
        e_layer.append(torch.full((o * i,), l.index))
        e_type.append(torch.full((o * i,), EDGE_WEIGHT))
        kmap = kernel_map(l.kernel, kshape)
        numel_k = math.prod(l.kernel)
        base = offsets[l.weight] + torch.arange(o * i) * numel_k
        g = base[:, None] + kmap[None, :]
        gathers.append(torch.where(kmap[None, :] >= 0, g, torch.full_like(g, ZERO)))
        edge_slices.append((e, e + o * i))
        e += o * i

    links: list[tuple[int, int]] = []
    _residual_links(spec.program, 0, links)
    center = kernel_map((), kshape)  # identity kernel = 1x1 kernel of value 1 at the center
    ident = torch.where(center >= 0, torch.full_like(center, ONE), torch.full_like(center, ZERO))
    for a, b in links:
        n = sizes[a]
        if sizes[b] != n:
            raise WeightSpaceError(f"residual block maps {n} neurons to {sizes[b]}")
        src.append(starts[a] + torch.arange(n))
        dst.append(starts[b] + torch.arange(n))
        e_layer.append(torch.full((n,), -1))
        e_type.append(torch.full((n,), EDGE_RESIDUAL))
        gathers.append(ident[None, :].expand(n, K))
    edge_index = torch.stack([torch.cat(src), torch.cat(dst)])
    edge_gather = torch.cat(gathers).contiguous()
    E = edge_index.shape[1]

    # Every parameter sits exactly once in [edge_attr | x]: invert the gathers there.
    feats = torch.cat([edge_gather.reshape(-1), node_gather])
    real = feats < D
    inverse = torch.full((D,), -1, dtype=torch.long)
    inverse[feats[real]] = torch.arange(feats.numel())[real]
    if int(real.sum()) != D or bool((inverse < 0).any()):  # a layout bug, not a user error
        raise WeightSpaceError(f"internal error: graph layout of {spec!r} does not cover every parameter once")

    return GraphLayout(
        spec=spec, kernel_shape=kshape, num_nodes=N, num_edges=E,
        node_slices=tuple((starts[s], starts[s + 1]) for s in range(L + 1)), edge_slices=tuple(edge_slices),
        edge_index=edge_index, node_layer=node_layer, node_type=node_type, node_pos=node_pos, node_group=node_group,
        edge_layer=torch.cat(e_layer), edge_type=torch.cat(e_type), node_gather=node_gather, edge_gather=edge_gather,
        inverse=inverse,
    )


def graph_layout(spec: WeightSpaceSpec, max_kernel: KernelArg = None) -> GraphLayout:
    """The cached neural-graph structure of ``spec`` (node / edge types, index buffers).

    ``max_kernel``: the kernel shape every edge is padded to (an int ``k`` means
    ``(k,) * d`` for ``d``-dimensional convolutions); default: the elementwise largest
    kernel of the spec, ``()`` (``K = 1``) for MLPs.
    """
    return _build_layout(spec, normalize_kernel(spec, max_kernel))


def clear_cache() -> None:
    """Drop every cached layout and batched structure (e.g. to free GPU memory)."""
    _build_layout.cache_clear()


# --------------------------------------------------------------------------- conversion
def to_graph(ws: WeightSpace, *, max_kernel: KernelArg = None) -> Batch:
    """One neural graph per network of ``ws``, as a PyG ``Batch`` (see module docstring).

    Differentiable in the weights. Pass the same ``max_kernel`` to graphs of different
    specs that should share one ``edge_attr`` width (e.g. ``(3, 3)`` for MLPs mixed
    with 3x3 CNNs).
    """
    lay = graph_layout(ws.spec, max_kernel)
    t = lay.tensors(ws.device)
    B, N, E, K = len(ws), lay.num_nodes, lay.num_edges, lay.kernel_size
    dev = ws.device
    # [flat | 0 | 1]: padding slots gather the 0 column, identity-kernel centers the 1 column
    consts = torch.tensor([0.0, 1.0], dtype=ws.dtype, device=dev).expand(B, 2)
    flat_ext = torch.cat([p.reshape(B, -1) for p in ws.tensors] + [consts], dim=1)
    # index_select along the parameter axis: much faster than advanced indexing on CPU
    x = flat_ext.index_select(1, t["node_gather"]).reshape(B * N, 1)
    edge_attr = flat_ext.index_select(1, t["edge_gather"].reshape(-1)).reshape(B * E, K)

    out = copy.copy(lay.template(B, dev))  # PyG's own batching of B structure-only graphs
    out.x, out.edge_attr = x, edge_attr
    return out


def _kernel_shape_of(graph: Data, spec: WeightSpaceSpec, max_kernel: KernelArg, B: int) -> tuple[int, ...]:
    ks = getattr(graph, "kernel_shape", None)
    if ks is None:
        return normalize_kernel(spec, max_kernel)
    if B == 0 or ks.numel() % B:
        raise WeightSpaceError(f"graph has kernel_shape {tuple(ks.shape)} for {B} graph(s); expected [B, d]")
    ks = ks.reshape(B, -1) if ks.numel() else ks.reshape(B, 0)
    if not bool((ks == ks[:1]).all()):
        raise WeightSpaceError("the graphs have different kernel_shape; from_graph needs graphs of one spec")
    shape = tuple(ks[0].tolist())
    if max_kernel is not None and normalize_kernel(spec, max_kernel) != shape:
        raise WeightSpaceError(f"max_kernel {max_kernel} disagrees with the graphs' kernel_shape {shape}")
    return normalize_kernel(spec, shape)


def from_graph(graph: Batch | Data, spec: WeightSpaceSpec, *, max_kernel: KernelArg = None) -> WeightSpace:
    """Inverse of :func:`to_graph`: read weights from ``edge_attr`` and biases from ``x``.

    ``graph`` is a ``Batch`` (or one ``Data``) of graphs of ``spec``, in the layout of
    :func:`to_graph` (``x`` / ``edge_attr`` may be replaced, e.g. by a model's
    output of the same shape). Padding slots and residual edges are ignored.

    Raises:
        WeightSpaceError: when node / edge counts, types or edges do not match ``spec``.
    """
    B = int(getattr(graph, "num_graphs", 1)) if isinstance(graph, Batch) else 1
    kshape = _kernel_shape_of(graph, spec, max_kernel, B)
    lay = graph_layout(spec, kshape)
    N, E, K = lay.num_nodes, lay.num_edges, lay.kernel_size
    x, edge_attr, edge_index = graph.x, graph.edge_attr, graph.edge_index
    if x is None or edge_attr is None or edge_index is None:
        raise WeightSpaceError("graph lacks x, edge_attr or edge_index; build it with wspace.graph.to_graph")
    want = f"{spec!r} gives {N} nodes and {E} edges per network"
    if x.shape[0] != B * N or x.numel() != B * N:
        raise WeightSpaceError(f"graph has x of shape {tuple(x.shape)} for {B} network(s), but {want} (x [B*{N}, 1])")
    if tuple(edge_attr.shape) != (B * E, K) or tuple(edge_index.shape) != (2, B * E):
        raise WeightSpaceError(
            f"graph has edge_attr {tuple(edge_attr.shape)} and edge_index {tuple(edge_index.shape)} for {B} "
            f"network(s), but {want} (edge_attr [B*{E}, {K}])"
        )
    t = lay.tensors(x.device)
    st = lay.template(B, edge_index.device)
    # Same counts are not enough (another spec may match them): check the structure too
    # (free when the tensors are still the ones to_graph handed out).
    for k in _NODE_KEYS + _EDGE_KEYS + ("edge_index",):
        v = getattr(graph, k, None)
        ref = st[k]
        if v is None or v is ref:
            continue
        if tuple(v.shape) != tuple(ref.shape) or not torch.equal(v, ref.to(v.device)):
            what = "edges (edge_index) do" if k == "edge_index" else f"attribute '{k}' does"
            raise WeightSpaceError(f"graph {what} not match the layout of {spec!r} (reordered, or another spec?)")
    feats = torch.cat([edge_attr.reshape(B, E * K), x.reshape(B, N).to(edge_attr.dtype)], dim=1)
    return WeightSpace.from_flat(spec, feats.index_select(1, t["inverse"].to(feats.device)))
