"""The module walker: :func:`spec_from_module` derives the spec of an ``nn.Module``.

It walks the module's children in execution order, records each parameter and op, and
finds the permutation groups with a union-find over neuron sets (a residual block joins
its input and output sets into one stream); each set remembers which extra symmetries
(positive scaling, sign flips) the ops applied to it preserve.
"""
from __future__ import annotations

import json
from typing import Any

from torch import nn

from ..errors import WeightSpaceError
from ..modules import ACTIVATIONS, GlobalAvgPool, Residual, Sine
from .description import WeightSpaceSpec
from .records import GroupSpec, Op, ParamSpec

# Which extra symmetries survive each elementwise op applied to a neuron set.
# "scale": x -> d*x with d > 0 commutes with the op (op(d x) = d op(x));
# "sign":  x -> -x commutes (op(-x) = -op(x)).
_ACT_SYMMETRIES: dict[str, frozenset[str]] = {
    "relu": frozenset({"scale"}),
    "leaky_relu": frozenset({"scale"}),
    "tanh": frozenset({"sign"}),
    "sine": frozenset({"sign"}),
    "identity": frozenset({"scale", "sign"}),
    "sigmoid": frozenset(),
    "gelu": frozenset(),
    "silu": frozenset(),
    "elu": frozenset(),
    "softplus": frozenset(),
}
_LINEAR_OPS = frozenset({"scale", "sign"})  # avg pooling, flatten, dropout, residual add
_MAX_POOL_OPS = frozenset({"scale"})  # max(d x) = d max(x) for d > 0 only


class _NeuronSets:
    """Union-find over neuron sets; each remembers the symmetries its post-ops allow."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.sym: list[frozenset[str]] = []
        self.fixed: list[bool] = []

    def new(self, size: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.sym.append(_LINEAR_OPS)
        self.fixed.append(fixed)
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.fixed[ra] = self.fixed[ra] or self.fixed[rb]
            self.sym[ra] = self.sym[ra] & self.sym[rb]

    def restrict(self, i: int, sym: frozenset[str]) -> None:
        r = self.find(i)
        self.sym[r] = self.sym[r] & sym


_SUPPORTED = (
    "nn.Sequential, nn.Linear, nn.Conv1d, nn.Conv2d, activations (ReLU, LeakyReLU, Tanh, Sigmoid, GELU, "
    "SiLU, ELU, Softplus, Identity, wspace.modules.Sine), MaxPool/AvgPool 1d/2d, AdaptiveAvg/MaxPool(1), "
    "wspace.modules.GlobalAvgPool, Flatten, Dropout, wspace.modules.Residual"
)


class _Walker:
    def __init__(self) -> None:
        self.sets = _NeuronSets()
        self.params: list[dict] = []  # key, shape, role, in_set, out_set, layer
        self.n_layers = 0
        self.cur: int | None = None  # neuron set of the current activations
        self.cur_features: int | None = None
        self.cur_dims: int | None = None  # spatial dims of current activations (0: vector)
        self.input_dims: int | None = None
        self.in_features: int | None = None
        self.spatial_collapsed = False  # spatial extent known to be 1 (after global pooling)
        self.pending_flatten: str | None = None

    def fail(self, path: str, module: nn.Module, problem: str) -> WeightSpaceError:
        where = path or "<root>"
        return WeightSpaceError(f"submodule '{where}' ({type(module).__name__}): {problem}")

    def walk_children(self, module: nn.Module, prefix: str) -> tuple[Op, ...]:
        ops = []
        for name, child in module.named_children():
            ops.extend(self.visit(child, name, f"{prefix}{name}"))
        return tuple(ops)

    def start_input(self, dims: int, features: int) -> None:
        self.input_dims = dims
        self.in_features = features
        self.cur = self.sets.new(features, fixed=True)
        self.cur_features = features
        self.cur_dims = dims

    def add_param_layer(self, path: str, module: nn.Module, kind: str, attrs: dict) -> Op:
        in_f = module.in_features if kind == "linear" else module.in_channels
        out_f = module.out_features if kind == "linear" else module.out_channels
        dims = 0 if kind == "linear" else attrs["dims"]
        if self.cur is None:
            self.start_input(dims, in_f)
        if kind == "linear" and self.cur_dims:
            if self.pending_flatten is None:
                raise self.fail(path, module, "Linear applied to a spatial feature map without Flatten")
        if kind == "conv" and self.cur_dims != dims:
            raise self.fail(path, module, f"Conv{dims}d applied to a {self.cur_dims}-d feature map")
        if in_f != self.cur_features:
            if kind == "linear" and self.pending_flatten is not None:
                raise WeightSpaceError(
                    f"submodule '{self.pending_flatten}' (Flatten): flattens a spatial map of {self.cur_features} "
                    f"channels into {in_f} features for '{path}'; channel permutation does not act neuron-wise "
                    "there. Use global pooling before Flatten."
                )
            raise self.fail(path, module, f"expects {in_f} inputs but receives {self.cur_features}")
        self.pending_flatten = None
        out_set = self.sets.new(out_f)
        layer = self.n_layers
        self.n_layers += 1
        idx = []
        w = module.weight
        self.params.append(dict(key=f"{path}.weight", shape=tuple(w.shape), role="weight", ins=self.cur, out=out_set, layer=layer))
        idx.append(len(self.params) - 1)
        if module.bias is not None:
            self.params.append(dict(key=f"{path}.bias", shape=tuple(module.bias.shape), role="bias", ins=None, out=out_set, layer=layer))
            idx.append(len(self.params) - 1)
        self.cur = out_set
        self.cur_features = out_f
        self.cur_dims = dims
        self.spatial_collapsed = False
        return Op(kind, path.rsplit(".", 1)[-1], tuple(sorted(attrs.items())), tuple(idx))

    def visit(self, m: nn.Module, name: str, path: str) -> list[Op]:
        if isinstance(m, Residual):
            if self.cur is None:
                raise self.fail(path, m, "a residual block cannot be the first layer (its input is the fixed input)")
            stream_in, feats, dims = self.cur, self.cur_features, self.cur_dims
            body = self.walk_children(m.block, f"{path}.block.")
            if self.cur_features != feats or self.cur_dims != dims:
                raise self.fail(path, m, f"block maps {feats} features to {self.cur_features}; a residual needs equal shapes")
            if self.cur == stream_in:
                raise self.fail(path, m, "residual block without a parametric layer")
            self.sets.union(stream_in, self.cur)
            out = self.sets.new(feats)  # the sum: a new set in the same group
            self.sets.union(stream_in, out)
            self.cur = out
            return [Op("residual", name, (), (), (Op("sequential", "block", (), (), body),))]
        if isinstance(m, nn.Sequential):
            return [Op("sequential", name, (), (), self.walk_children(m, f"{path}." if path else ""))]
        if isinstance(m, nn.Linear):
            return [self.add_param_layer(path, m, "linear", {})]
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            if m.groups != 1:
                raise self.fail(path, m, "grouped / depthwise convolutions are not supported")
            if m.padding_mode != "zeros":
                raise self.fail(path, m, f"padding_mode '{m.padding_mode}' is not supported (only 'zeros')")
            dims = 1 if isinstance(m, nn.Conv1d) else 2
            padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
            attrs = dict(dims=dims, stride=tuple(m.stride), padding=padding, dilation=tuple(m.dilation))
            return [self.add_param_layer(path, m, "conv", attrs)]
        if any(True for _ in m.parameters(recurse=False)) or list(m.named_buffers(recurse=False)):
            raise self.fail(path, m, f"has parameters or buffers but is not a supported layer; supported: {_SUPPORTED}")
        if self.cur is None:
            raise self.fail(path, m, "the first layer must be Linear or Conv1d/Conv2d")
        act = _activation_of(m)
        if act is not None:
            act_name, attrs = act
            self.sets.restrict(self.cur, _ACT_SYMMETRIES[act_name])
            return [Op("act", name, tuple(sorted({"name": act_name, **attrs}.items())))]
        if isinstance(m, nn.Dropout):
            return [Op("dropout", name, (("p", float(m.p)),))]
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
            dims = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
            if self.cur_dims != dims:
                raise self.fail(path, m, f"{dims}-d pooling applied to a {self.cur_dims}-d feature map")
            mode = "max" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) else "avg"
            if mode == "max":
                if m.dilation not in (1, (1,), (1, 1)) or m.return_indices:
                    raise self.fail(path, m, "dilated max pooling / return_indices are not supported")
                self.sets.restrict(self.cur, _MAX_POOL_OPS)
            elif getattr(m, "count_include_pad", True) is not True or getattr(m, "divisor_override", None):
                raise self.fail(path, m, "count_include_pad=False / divisor_override are not supported")
            kernel = _tuple(m.kernel_size, dims)
            stride = _tuple(m.stride if m.stride is not None else m.kernel_size, dims)
            attrs = dict(mode=mode, dims=dims, kernel=kernel, stride=stride, padding=_tuple(m.padding, dims),
                         ceil_mode=bool(m.ceil_mode))
            return [Op("pool", name, tuple(sorted(attrs.items())))]
        if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
            dims = 1 if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)) else 2
            if _tuple(m.output_size, dims) != (1,) * dims:
                raise self.fail(path, m, "only output_size=1 (global pooling) is supported")
            mode = "max" if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)) else "avg"
            if mode == "max":
                self.sets.restrict(self.cur, _MAX_POOL_OPS)
            self.spatial_collapsed = True
            return [Op("adaptive_pool", name, (("dims", dims), ("mode", mode)))]
        if isinstance(m, GlobalAvgPool):
            self.cur_dims = 0
            return [Op("gap", name)]
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise self.fail(path, m, "only Flatten(start_dim=1, end_dim=-1) is supported")
            if self.cur_dims:
                self.pending_flatten = None if self.spatial_collapsed else path
                self.cur_dims = 0
            return [Op("flatten", name)]
        raise self.fail(path, m, f"unsupported module type; supported: {_SUPPORTED}")


def _tuple(v: Any, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _activation_of(m: nn.Module) -> tuple[str, dict] | None:
    if isinstance(m, Sine):
        return "sine", {"w0": m.w0}
    if isinstance(m, nn.LeakyReLU):
        return "leaky_relu", {"negative_slope": float(m.negative_slope)}
    if isinstance(m, nn.ELU):
        return "elu", {"alpha": float(m.alpha)}
    if isinstance(m, nn.GELU):
        return "gelu", {"approximate": m.approximate}
    if isinstance(m, nn.Softplus):
        return "softplus", {"beta": float(m.beta), "threshold": float(m.threshold)}
    name = next((n for n, cls in ACTIVATIONS.items() if type(m) is cls), None)  # the rest take no arguments
    return None if name is None else (name, {})


def spec_from_module(model: nn.Module) -> WeightSpaceSpec:
    """Derive the :class:`WeightSpaceSpec` of ``model``.

    Supports ``nn.Sequential`` stacks (nested too) of Linear / Conv1d / Conv2d layers,
    elementwise activations (including :class:`wspace.modules.Sine` for SIRENs),
    pooling, ``Flatten`` after global pooling, dropout and
    :class:`wspace.modules.Residual` blocks. Registered families (see
    :func:`~wspace.spec.register_family`) record how to rebuild their own class.

    Raises:
        WeightSpaceError: naming the offending submodule, for anything whose
            symmetry the library cannot describe (e.g. an LSTM, a grouped conv, or a
            Flatten of a spatial map into a Linear layer).
    """
    w = _Walker()
    if isinstance(model, nn.Sequential):
        program = w.walk_children(model, "")
    elif isinstance(model, Residual):
        raise w.fail("", model, "a network cannot start with a residual block")
    else:
        if isinstance(model, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise WeightSpaceError("wrap a single layer in nn.Sequential to derive its spec")
        raise w.fail("", model, f"only nn.Sequential-style models are supported; supported layers: {_SUPPORTED}")
    if w.n_layers == 0:
        raise WeightSpaceError("the module has no Linear or Conv layer")
    if w.cur_dims:
        raise WeightSpaceError("the network's output is a spatial map; end it with pooling + Flatten + Linear")
    w.sets.fixed[w.sets.find(w.cur)] = True  # outputs are never permuted

    # Number the free neuron classes in order of first appearance.
    gid_of_root: dict[int, int] = {}
    groups: list[GroupSpec] = []
    members: dict[int, int] = {}
    for s in range(len(w.sets.parent)):
        members[w.sets.find(s)] = members.get(w.sets.find(s), 0) + 1

    def gid(s: int | None) -> int | None:
        if s is None:
            return None
        r = w.sets.find(s)
        if w.sets.fixed[r]:
            return None
        if r not in gid_of_root:
            gid_of_root[r] = len(groups)
            sym = tuple(sorted(w.sets.sym[r]))
            groups.append(GroupSpec(len(groups), w.sets.size[r], sym, members[r] > 1))
        return gid_of_root[r]

    params = []
    for p in w.params:
        out_g = gid(p["out"])
        if p["role"] == "weight":
            axes = (out_g, gid(p["ins"])) + (None,) * (len(p["shape"]) - 2)
        else:
            axes = (out_g,)
        params.append(ParamSpec(p["key"], p["shape"], p["role"], axes, p["layer"]))

    family = getattr(type(model), "wspace_family", None)
    fam_kwargs = getattr(model, "wspace_config", {}) if family else {}
    return WeightSpaceSpec(
        params=tuple(params),
        program=program,
        groups=tuple(groups),
        input_dims=w.input_dims,
        in_features=w.in_features,
        out_features=w.cur_features,
        family=family,
        family_kwargs=json.dumps(fam_kwargs, sort_keys=True),
    )
