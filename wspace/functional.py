"""Vectorized evaluation of B networks of one spec.

``forward(spec, tensors, x)`` runs the spec's program on all B networks at once:
linear layers are one batched matmul, convolutions one grouped convolution (the B
networks become B groups), elementwise ops act on the stacked activations. No Python
loop over networks, neurons or edges.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import WeightSpaceError
from .spec import Op, WeightSpaceSpec


def _act(name: str, attrs: dict, h: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    if name == "relu":
        return h.relu_() if inplace else F.relu(h)
    if name == "leaky_relu":
        return F.leaky_relu(h, attrs.get("negative_slope", 0.01))
    if name == "tanh":
        return h.tanh_() if inplace else torch.tanh(h)
    if name == "sine":
        return h.mul_(attrs["w0"]).sin_() if inplace else torch.sin(attrs["w0"] * h)
    if name == "sigmoid":
        return torch.sigmoid(h)
    if name == "gelu":
        return F.gelu(h, approximate=attrs.get("approximate", "none"))
    if name == "silu":
        return F.silu(h)
    if name == "elu":
        return F.elu(h, attrs.get("alpha", 1.0))
    if name == "softplus":
        return F.softplus(h, attrs.get("beta", 1.0), attrs.get("threshold", 20.0))
    if name == "identity":
        return h
    raise WeightSpaceError(f"unknown activation '{name}'")


class _State:
    """Activations of B networks: ``h`` is ``[B, N, C, *spatial]``, or ``[N, C, ...]``
    while still shared by all networks (before the first layer)."""

    __slots__ = ("h", "shared", "owned")

    def __init__(self, h: torch.Tensor, shared: bool):
        self.h = h
        self.shared = shared
        self.owned = False  # True once h is an intermediate no one else holds (in-place ops allowed)


def _linear(st: _State, w: torch.Tensor, b: torch.Tensor | None) -> None:
    h = st.h
    if st.shared:  # [N, in] shared by all networks: a stride-0 batch view, no copy
        h = h.unsqueeze(0).expand(w.shape[0], *h.shape)
    wt = w.transpose(1, 2)
    # bias fused into the batched matmul: one pass over the [B, N, out] output
    st.h = torch.bmm(h, wt) if b is None else torch.baddbmm(b.unsqueeze(1), h, wt)
    st.shared = False


def _conv(st: _State, w: torch.Tensor, b: torch.Tensor | None, attrs: dict) -> None:
    B, out_c, in_c = w.shape[:3]
    conv = F.conv1d if attrs["dims"] == 1 else F.conv2d
    kw = dict(stride=attrs["stride"], padding=attrs["padding"], dilation=attrs["dilation"])
    weight = w.reshape(B * out_c, in_c, *w.shape[3:])
    bias = None if b is None else b.reshape(B * out_c)
    if st.shared:  # one ungrouped conv computes every network's first layer
        y = conv(st.h, weight, bias, **kw)  # [N, B*out, ...]
    else:  # networks as groups: [N, B*in, ...] with B groups
        h = st.h
        N = h.shape[1]
        y = conv(h.transpose(0, 1).reshape(N, B * in_c, *h.shape[3:]), weight, bias, groups=B, **kw)
    N = y.shape[0]
    st.h = y.reshape(N, B, out_c, *y.shape[2:]).transpose(0, 1)
    st.shared = False


def _per_sample(st: _State, fn) -> None:
    """Apply a per-sample op (pooling) by folding networks into the sample axis."""
    h = st.h
    if st.shared:
        st.h = fn(h)
        return
    B, N = h.shape[:2]
    y = fn(h.reshape(B * N, *h.shape[2:]))
    st.h = y.reshape(B, N, *y.shape[1:])


def _run(ops: Sequence[Op], tensors: Sequence[torch.Tensor], st: _State) -> None:
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
            st.h = _act(a.pop("name"), a, st.h, inplace)
        elif k == "sequential":
            _run(op.children, tensors, st)
        elif k == "residual":
            inp = st.h
            inner = _State(inp, st.shared)  # not owned: the block must not overwrite its input
            _run(op.children, tensors, inner)
            st.h, st.shared, st.owned = inner.h + inp, inner.shared, True
        elif k == "dropout":
            continue  # evaluation mode
        elif k == "flatten":
            st.h = st.h.flatten(2 if not st.shared else 1)
        elif k == "gap":
            st.h = st.h.flatten(3 if not st.shared else 2).mean(-1)
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


def forward(spec: WeightSpaceSpec, tensors: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Evaluate B networks (``tensors[i]`` is ``[B, *spec.params[i].shape]``) on ``x``.

    ``x`` is ``[N, *in_shape]`` (shared by all networks) or ``[B, N, *in_shape]``
    (one input batch per network). Returns ``[B, N, *out_shape]``.
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
    st = _State(x, shared)
    _run(spec.program, tensors, st)
    if st.shared:  # a program with no parametric layer cannot happen (specs need one)
        st.h = st.h.unsqueeze(0).expand(B, *st.h.shape)
    return st.h


def kaiming_bound(fan_in: int) -> float:
    """The bound of PyTorch's default Linear/Conv init (kaiming_uniform with a=sqrt(5))."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
