"""Vectorized evaluation of B networks of one spec.

``forward(spec, tensors, x)`` runs the spec's program on all B networks at once:
linear layers are one batched matmul, convolutions one grouped convolution (the B
networks become B groups), elementwise ops act on the stacked activations. No Python
loop over networks, neurons or edges.

Speed (CPU): activations live in the layout the next kernel reads, so no transposes
happen between layers. Linear layers keep features before samples (``[B, C, N]``,
``W @ h``: the weights are the left operand as stored); convolutions keep the grouped
layout ``[N, B*C, *spatial]`` from the first convolution through pooling to the
flatten/global pooling. The B networks are run in chunks sized so that one chunk's
activations stay in the CPU cache (and its buffers are reused by the allocator
instead of being page-faulted in fresh): at 256+ inputs this alone is 3-5x.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import WeightSpaceError
from .spec import Op, WeightSpaceSpec

__all__ = ["forward", "chunk_size", "kaiming_bound", "apply_activation", "Activations", "run_ops",
           "CHUNK_ELEMS_LINEAR", "CHUNK_ELEMS_CONV"]

# Activation elements per chunk of networks on CPU (measured on a 2 MiB-L2 Xeon: a chunk of
# ~0.5 MiB for matmul networks, ~2 MiB for grouped convolutions, whose per-call cost is higher).
CHUNK_ELEMS_LINEAR = 1 << 17
CHUNK_ELEMS_CONV = 1 << 19


def apply_activation(name: str, attrs: dict, h: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """The activation op ``name`` (a spec op's name and attributes, e.g. ``w0`` of ``sine``) on ``h``,
    in place if ``inplace`` (only on tensors no one else holds)."""
    if name == "relu":
        return h.relu_() if inplace else F.relu(h)
    if name == "leaky_relu":
        return F.leaky_relu(h, attrs.get("negative_slope", 0.01), inplace=inplace)
    if name == "tanh":
        return h.tanh_() if inplace else torch.tanh(h)
    if name == "sine":
        return h.mul_(attrs["w0"]).sin_() if inplace else torch.sin(attrs["w0"] * h)
    if name == "sigmoid":
        return h.sigmoid_() if inplace else torch.sigmoid(h)
    if name == "gelu":
        return F.gelu(h, approximate=attrs.get("approximate", "none"))
    if name == "silu":
        return F.silu(h, inplace=inplace)
    if name == "elu":
        return F.elu(h, attrs.get("alpha", 1.0), inplace=inplace)
    if name == "softplus":
        return F.softplus(h, attrs.get("beta", 1.0), attrs.get("threshold", 20.0))
    if name == "identity":
        return h
    raise WeightSpaceError(f"unknown activation '{name}'")


# Layouts of the activations of B networks (C: channels/features, N: samples):
#   "shared"   [N, C, *spatial]    the input, common to all networks (before the first layer)
#   "bnc"      [B, N, C, *spatial] the canonical layout (what forward returns)
#   "bcn"      [B, C, N]           features only: what ``W @ h`` reads and writes
#   "grouped"  [N, B*C, *spatial]  what grouped convolutions read and write
class Activations:
    """Activations of B networks and their layout.

    ``Activations(h, shared)`` starts in the canonical mode: after every op the activations
    are ``[B, N, C, *spatial]`` (or ``[N, C, ...]`` while still ``shared``), which callers
    stepping through ops one at a time (:func:`run_ops`) rely on. ``fast=True`` lets them
    stay in the layout the next kernel wants (see module docstring). ``keep_grouped=True``
    is canonical except that convolution chains stay ``grouped`` (``[N, B*C, *spatial]``)
    from the first convolution to the flatten / global pooling, whose result is canonical
    again; linear layers run as in the canonical mode. The vectorized zoo trainer uses it
    to apply per-network dropout between ops.
    """

    __slots__ = ("h", "layout", "owned", "fast", "B", "keep_grouped")

    def __init__(self, h: torch.Tensor, shared: bool, fast: bool = False, B: int | None = None,
                 keep_grouped: bool = False):
        self.h = h
        self.layout = "shared" if shared else "bnc"
        self.owned = False  # True once h is an intermediate no one else holds (in-place ops allowed)
        self.fast = fast
        self.keep_grouped = keep_grouped
        self.B = B if B is not None else (None if shared else h.shape[0])

    @property
    def shared(self) -> bool:
        return self.layout == "shared"

    def to(self, layout: str) -> torch.Tensor:
        """Convert the activations to ``layout`` (copies only where a kernel needs it)."""
        h, cur, B = self.h, self.layout, self.B
        if cur == layout:
            return h
        if cur == "grouped":
            N, BC = h.shape[:2]
            h = h.reshape(N, B, BC // B, *h.shape[2:])
            if layout == "bnc":
                h = h.transpose(0, 1)
            elif layout == "bcn":
                h = h.permute(1, 2, 0).contiguous()
            else:
                raise AssertionError(layout)
        elif cur == "bcn":
            if layout == "bnc":
                h = h.transpose(1, 2)
            elif layout == "grouped":
                h = h.permute(2, 0, 1).reshape(h.shape[2], -1)
            else:
                raise AssertionError(layout)
        elif cur == "bnc":
            if layout == "bcn":
                h = h.transpose(1, 2).contiguous()
            elif layout == "grouped":
                h = h.transpose(0, 1).reshape(h.shape[1], -1, *h.shape[3:])
            else:
                raise AssertionError(layout)
        else:  # shared: only residual sums need it broadcast (layers read it directly)
            if layout == "bnc":
                h = h.unsqueeze(0).expand(B, *h.shape)
            elif layout == "bcn":
                h = h.t().unsqueeze(0).expand(B, *h.shape[::-1])
            elif layout == "grouped":
                h = h.unsqueeze(1).expand(h.shape[0], B, *h.shape[1:]).reshape(h.shape[0], -1, *h.shape[2:])
            else:
                raise AssertionError(layout)
        self.h, self.layout = h, layout
        return h


def _needs_grad(*ts: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def _linear(st: Activations, w: torch.Tensor, b: torch.Tensor | None) -> None:
    B, out_f, in_f = w.shape
    st.B = B
    grad = _needs_grad(st.h, w, b)
    if not st.fast:  # canonical [B, N, in] -> [B, N, out]
        h = st.to("bnc") if not st.shared else st.h.unsqueeze(0).expand(B, *st.h.shape)  # stride-0 view, no copy
        wt = w.transpose(1, 2)
        st.h = torch.bmm(h, wt) if b is None else torch.baddbmm(b.unsqueeze(1), h, wt)
        st.layout = "bnc"
        return
    if st.shared:  # one flat GEMM for every network's first layer: [B*out, in] @ [in, N]
        x = st.h
        N = x.shape[0]
        w2 = w.reshape(B * out_f, in_f)
        if b is not None and grad:
            y = torch.addmm(b.reshape(B * out_f, 1), w2, x.t())
        else:
            y = torch.mm(w2, x.t())
            if b is not None:
                y.add_(b.reshape(B * out_f, 1))
        st.h, st.layout = y.view(B, out_f, N), "bcn"
        return
    h = st.to("bcn")
    if h.shape[2] == 1:  # one sample: [B, in, 1] is [B, 1, in] in memory, and the row-vector GEMV is faster
        y = torch.bmm(h.reshape(B, 1, in_f), w.transpose(1, 2)).view(B, out_f, 1)  # (a transposed view is slow)
        if b is not None:
            y = y + b.unsqueeze(2) if grad else y.add_(b.unsqueeze(2))
    elif b is not None and grad:
        y = torch.baddbmm(b.unsqueeze(2), w, h)
    else:
        y = torch.bmm(w, h)
        if b is not None:
            y.add_(b.unsqueeze(2))  # on the fresh output: cheaper than baddbmm's broadcast bias copy
    st.h, st.layout = y, "bcn"


def _conv(st: Activations, w: torch.Tensor, b: torch.Tensor | None, attrs: dict) -> None:
    B, out_c, in_c = w.shape[:3]
    st.B = B
    conv = F.conv1d if attrs["dims"] == 1 else F.conv2d
    kw = dict(stride=attrs["stride"], padding=attrs["padding"], dilation=attrs["dilation"])
    weight = w.reshape(B * out_c, in_c, *w.shape[3:])
    bias = None if b is None else b.reshape(B * out_c)
    if st.shared:  # one ungrouped conv computes every network's first layer
        y = conv(st.h, weight, bias, **kw)  # [N, B*out, ...]
    else:  # networks as groups: [N, B*in, ...] with B groups
        y = conv(st.to("grouped"), weight, bias, groups=B, **kw)
    st.h, st.layout = y, "grouped"


def _per_sample(st: Activations, fn) -> None:
    """Apply a per-channel op (pooling): shared and grouped layouts take it as they are,
    the canonical one folds networks into the sample axis."""
    h = st.h
    if st.layout in ("shared", "grouped"):
        st.h = fn(h)
        return
    h = st.to("bnc")
    B, N = h.shape[:2]
    y = fn(h.reshape(B * N, *h.shape[2:]))
    st.h = y.reshape(B, N, *y.shape[1:])


def run_ops(ops: Sequence[Op], tensors: Sequence[torch.Tensor], st: Activations) -> None:
    """Run the spec ops ``ops`` (parameters ``tensors``, in spec order) on the activations ``st``,
    updating it in place (the one interpreter of spec programs)."""
    for op in ops:
        k = op.kind
        if k == "linear" or k == "conv":
            w = tensors[op.params[0]]
            b = tensors[op.params[1]] if len(op.params) > 1 else None
            if k == "linear":
                _linear(st, w, b)
            else:
                _conv(st, w, b, dict(op.attrs))
            st.owned = True
        elif k == "act":
            a = dict(op.attrs)
            # in place only on our own intermediates and when autograd does not need them
            inplace = st.owned and not (torch.is_grad_enabled() and st.h.requires_grad)
            st.h = apply_activation(a.pop("name"), a, st.h, inplace)
        elif k == "sequential":
            run_ops(op.children, tensors, st)
        elif k == "residual":
            inner = Activations(st.h, False, st.fast, st.B, st.keep_grouped)  # not owned: the block must not overwrite its input
            inner.layout = st.layout
            run_ops(op.children, tensors, inner)
            if inner.B is not None:
                st.B = inner.B
            out = inner.h
            if inner.layout != st.layout:
                st.to(inner.layout)
            st.h, st.layout, st.owned = out + st.h, inner.layout, True
        elif k == "dropout":
            continue  # evaluation mode
        elif k == "flatten":
            if st.layout == "grouped":  # [N, B*C, *sp] -> [N, B*(C*prod(sp))]: networks stay contiguous
                st.h = st.h.reshape(st.h.shape[0], -1)
            elif st.layout == "bcn":
                pass  # already flat
            else:
                st.h = st.h.flatten(2 if not st.shared else 1)
        elif k == "gap":
            if st.layout == "grouped":
                st.h = st.h.flatten(2).mean(-1)  # [N, B*C]
            else:
                h = st.to("bnc") if not st.shared else st.h
                st.h = h.flatten(3 if not st.shared else 2).mean(-1)
        elif k == "pool":
            a = dict(op.attrs)
            fn = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d,
                  ("avg", 1): F.avg_pool1d, ("avg", 2): F.avg_pool2d}[(a["mode"], a["dims"])]
            _per_sample(st, lambda t: fn(t, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"]))
        elif k == "adaptive_pool":
            a = dict(op.attrs)
            keep = (1,) * a["dims"]
            if a["mode"] == "avg":
                _per_sample(st, lambda t: t.flatten(2).mean(-1).reshape(*t.shape[:2], *keep))
            else:
                _per_sample(st, lambda t: t.flatten(2).amax(-1).reshape(*t.shape[:2], *keep))
        else:
            raise WeightSpaceError(f"cannot evaluate op kind '{k}'")
        if not st.fast and not st.shared and not (st.keep_grouped and st.layout == "grouped"
                                                  and k not in ("gap", "flatten")):
            st.to("bnc")


def _widest(spec: WeightSpaceSpec, spatial: tuple[int, ...]) -> int:
    """Largest activation of one network on one sample (elements) over the program's
    parametric layers, for an input of spatial size ``spatial``."""
    best = 1

    def out_size(s: int, k: int, st: int, p: int, d: int, ceil: bool = False) -> int:
        span = s + 2 * p - d * (k - 1) - 1
        return max(1, (-(-span // st) if ceil else span // st) + 1)

    def walk(ops: Sequence[Op], sp: tuple[int, ...]) -> tuple[int, ...]:
        nonlocal best
        for op in ops:
            a = dict(op.attrs)
            if op.kind == "linear":
                best, sp = max(best, spec.params[op.params[0]].shape[0]), ()
            elif op.kind == "conv":
                shape = spec.params[op.params[0]].shape
                pad = a["padding"]
                if pad != "same":
                    pad = (0,) * len(sp) if pad == "valid" else pad
                    sp = tuple(out_size(s, k, st, p, d) for s, k, st, p, d in
                               zip(sp, shape[2:], a["stride"], pad, a["dilation"]))
                best = max(best, shape[0] * math.prod(sp))
            elif op.kind == "pool":
                sp = tuple(out_size(s, k, st, p, 1, a["ceil_mode"]) for s, k, st, p in
                           zip(sp, a["kernel"], a["stride"], a["padding"]))
            elif op.kind in ("adaptive_pool", "gap", "flatten"):
                sp = ()
            elif op.kind in ("sequential", "residual"):
                sp = walk(op.children, sp)
        return sp

    walk(spec.program, tuple(spatial))
    return best


def chunk_size(spec: WeightSpaceSpec, B: int, x: torch.Tensor, shared: bool) -> int:
    """How many networks ``forward`` runs at once (all B off the CPU).

    Sized so that one chunk's widest activation (``_widest * N`` per network) holds
    about ``CHUNK_ELEMS_*`` elements.
    """
    if x.device.type != "cpu":
        return B
    N = x.shape[0] if shared else x.shape[1]
    spatial = tuple(x.shape[x.dim() - spec.input_dims:]) if spec.input_dims else ()
    conv = any(layer.kind == "conv" for layer in spec.layers)
    target = CHUNK_ELEMS_CONV if conv else CHUNK_ELEMS_LINEAR
    return max(1, min(B, target // max(1, _widest(spec, spatial) * N)))


def forward(
    spec: WeightSpaceSpec, tensors: Sequence[torch.Tensor], x: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Evaluate B networks (``tensors[i]`` is ``[B, *spec.params[i].shape]``) on ``x``.

    ``x`` is ``[N, *in_shape]`` (shared by all networks) or ``[B, N, *in_shape]``
    (one input batch per network). Returns ``[B, N, *out_shape]`` (contiguous).
    ``chunk``: networks run at once (default: ``chunk_size``, cache-sized on CPU);
    differentiable either way.
    """
    sample_ndim = 1 + spec.input_dims  # features, or channels + spatial
    B = tensors[0].shape[0]
    if x.dim() == sample_ndim + 1:
        shared = True
    elif x.dim() == sample_ndim + 2:
        if x.shape[0] != B:
            raise WeightSpaceError(f"per-network inputs have batch {x.shape[0]} but there are {B} networks")
        shared = False
    else:
        raise WeightSpaceError(
            f"input of shape {tuple(x.shape)} does not fit a network with {spec.input_dims}-d inputs: expected "
            f"[N, {spec.in_features}{', ...' * spec.input_dims}] or [B, N, ...]"
        )
    feat_axis = 1 if shared else 2
    if x.shape[feat_axis] != spec.in_features:
        raise WeightSpaceError(f"input has {x.shape[feat_axis]} features/channels, the networks expect {spec.in_features}")
    x = x.to(dtype=tensors[0].dtype, device=tensors[0].device)
    c = chunk_size(spec, B, x, shared) if chunk is None else max(1, min(int(chunk), B))
    if c >= B:
        return _forward_all(spec, tensors, x, shared, B)
    outs = [
        _forward_all(spec, [t[i:i + c] for t in tensors], x if shared else x[i:i + c], shared, min(c, B - i))
        for i in range(0, B, c)
    ]
    return torch.cat(outs)


def _forward_all(spec: WeightSpaceSpec, tensors: Sequence[torch.Tensor], x: torch.Tensor, shared: bool, B: int):
    st = Activations(x, shared, fast=True, B=B)
    run_ops(spec.program, tensors, st)
    if st.shared:  # a program with no parametric layer cannot happen (specs need one)
        return st.h.unsqueeze(0).expand(B, *st.h.shape)
    return st.to("bnc").contiguous()


def kaiming_bound(fan_in: int) -> float:
    """The bound of PyTorch's default Linear/Conv init (kaiming_uniform with a=sqrt(5))."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
