"""``WeightSpaceSpec``: what an architecture's parameters are and how they permute.

A spec is an immutable, hashable, JSON-serializable description of one architecture:

* ``params``: every parameter in execution order, with its state_dict key, shape,
  role (``"weight"`` or ``"bias"``) and, for each axis, a *permutation group id*
  (axes with the same id are permuted together; ``None`` = never permuted: network
  inputs, outputs, kernel positions);
* ``program``: the sequence of operations (linear, conv, activation, pooling,
  flatten, residual blocks) that evaluates the network, so that
  :class:`~wspace.WeightSpace` can run B networks in one vectorized call and
  ``build_module`` can rebuild an ``nn.Module`` with the same state_dict keys;
* ``groups``: the size of each permutation group and the extra symmetries its
  neurons have (``"scale"``: positive rescaling through ReLU-like activations;
  ``"sign"``: sign flips through odd activations such as tanh and sine).

:func:`spec_from_module` derives a spec from an ``nn.Module``.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from torch import nn

from .errors import WeightSpaceError
from .modules import GlobalAvgPool, Residual, Sine

SPEC_FORMAT_VERSION = 1

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


def _freeze(value: Any) -> Any:
    """Lists (from JSON) -> tuples, recursively, so specs stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of the architecture.

    Attributes:
        key: its state_dict key.
        shape: its shape (without the batch axis).
        role: ``"weight"`` or ``"bias"``.
        axes: per axis, the permutation group id or ``None`` (fixed axis).
        layer: index of the parametric layer it belongs to (see ``WeightSpaceSpec.layers``).
    """

    key: str
    shape: tuple[int, ...]
    role: str
    axes: tuple[int | None, ...]
    layer: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class GroupSpec:
    """A permutation group: ``size`` neurons permuted together wherever ``id`` appears.

    ``symmetries`` lists the extra function-preserving transforms of these neurons
    (``"scale"``, ``"sign"``); ``stream`` is True for residual streams.
    """

    id: int
    size: int
    symmetries: tuple[str, ...]
    stream: bool = False


@dataclass(frozen=True)
class Op:
    """One step of a network's program.

    ``kind`` is one of ``linear``, ``conv``, ``act``, ``pool``, ``adaptive_pool``,
    ``gap``, ``flatten``, ``dropout``, ``residual``. ``name`` is the child name in
    its parent module, ``attrs`` the op's settings, ``params`` indices into
    ``WeightSpaceSpec.params`` (weight, then bias if any), ``children`` the body of a
    residual block.
    """

    kind: str
    name: str
    attrs: tuple[tuple[str, Any], ...] = ()
    params: tuple[int, ...] = ()
    children: tuple["Op", ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.attrs:
            d["attrs"] = {k: v for k, v in self.attrs}
        if self.params:
            d["params"] = list(self.params)
        if self.children:
            d["children"] = [c.to_dict() for c in self.children]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Op":
        return cls(
            kind=d["kind"],
            name=d["name"],
            attrs=tuple(sorted((k, _freeze(v)) for k, v in d.get("attrs", {}).items())),
            params=tuple(d.get("params", ())),
            children=tuple(cls.from_dict(c) for c in d.get("children", ())),
        )


@dataclass(frozen=True)
class LayerSpec:
    """A parametric layer (linear or conv) seen as a map between neuron sets.

    ``in_group`` / ``out_group`` are the permutation groups of its input and output
    neurons (``None`` for network inputs/outputs), ``kernel`` the kernel shape
    (``()`` for linear layers), ``weight`` / ``bias`` indices into ``spec.params``
    (``bias`` is ``None`` without bias).
    """

    index: int
    kind: str
    in_features: int
    out_features: int
    kernel: tuple[int, ...]
    weight: int
    bias: int | None
    in_group: int | None
    out_group: int | None


@dataclass(frozen=True)
class WeightSpaceSpec:
    """Immutable description of one architecture's weight space (see module docstring)."""

    params: tuple[ParamSpec, ...]
    program: tuple[Op, ...]
    groups: tuple[GroupSpec, ...]
    input_dims: int  # 0: feature vectors, 1: [C, L] signals, 2: [C, H, W] images
    in_features: int  # input features or input channels
    out_features: int
    family: str | None = None  # registered family name, to rebuild the original class
    family_kwargs: str = "{}"  # JSON of the family's constructor kwargs
    _layers: tuple[LayerSpec, ...] = field(default=(), compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_layers", _derive_layers(self))

    # ----------------------------------------------------------------- views
    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        """The parametric layers (linear / conv) in execution order."""
        return self._layers

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(p.shape for p in self.params)

    @property
    def num_params(self) -> int:
        return sum(p.numel for p in self.params)

    @property
    def activations(self) -> tuple[str, ...]:
        """Names of the activations used, in order of first appearance."""
        seen: list[str] = []
        for op in self.walk():
            if op.kind == "act" and op.attr("name") not in seen:
                seen.append(op.attr("name"))
        return tuple(seen)

    def group(self, gid: int) -> GroupSpec:
        return self.groups[gid]

    def walk(self) -> Iterator[Op]:
        """All ops, residual bodies included, in execution order."""

        def rec(ops: tuple[Op, ...]) -> Iterator[Op]:
            for op in ops:
                yield op
                yield from rec(op.children)

        return rec(self.program)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "params": [
                {"key": p.key, "shape": list(p.shape), "role": p.role, "axes": list(p.axes), "layer": p.layer}
                for p in self.params
            ],
            "program": [op.to_dict() for op in self.program],
            "groups": [
                {"id": g.id, "size": g.size, "symmetries": list(g.symmetries), "stream": g.stream} for g in self.groups
            ],
            "input_dims": self.input_dims,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "family": self.family,
            "family_kwargs": json.loads(self.family_kwargs),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "WeightSpaceSpec":
        try:
            version = d.get("format_version", SPEC_FORMAT_VERSION)
            if version > SPEC_FORMAT_VERSION:
                raise WeightSpaceError(f"spec format version {version} is newer than this library ({SPEC_FORMAT_VERSION})")
            return cls(
                params=tuple(
                    ParamSpec(p["key"], tuple(p["shape"]), p["role"], tuple(p["axes"]), int(p["layer"])) for p in d["params"]
                ),
                program=tuple(Op.from_dict(o) for o in d["program"]),
                groups=tuple(
                    GroupSpec(int(g["id"]), int(g["size"]), tuple(g["symmetries"]), bool(g.get("stream", False)))
                    for g in d["groups"]
                ),
                input_dims=int(d["input_dims"]),
                in_features=int(d["in_features"]),
                out_features=int(d["out_features"]),
                family=d.get("family"),
                family_kwargs=json.dumps(d.get("family_kwargs", {}), sort_keys=True),
            )
        except (KeyError, TypeError) as e:
            raise WeightSpaceError(f"malformed spec dictionary: missing or invalid field {e}") from e

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "WeightSpaceSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise WeightSpaceError(f"spec is not valid JSON: {e}") from e
        return cls.from_dict(d)

    @property
    def fingerprint(self) -> str:
        """A short stable hash of the weight space and the function it computes.

        It ignores what does not change either: the family label and its kwargs,
        and dropout layers (identity at evaluation). Networks with equal
        fingerprints can be stacked into one :class:`~wspace.WeightSpace`.
        """
        d = self.to_dict()
        d.pop("family")
        d.pop("family_kwargs")
        d["program"] = _strip_dropout(d["program"])
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def same_space(self, other: "WeightSpaceSpec") -> bool:
        """True when ``other`` describes the same weight space and function (see ``fingerprint``)."""
        return self is other or self == other or self.fingerprint == other.fingerprint

    # ---------------------------------------------------------------- modules
    def build_module(self) -> nn.Module:
        """Rebuild an ``nn.Module`` with this spec's state_dict keys (random init)."""
        if self.family is not None:
            cls = get_family(self.family)
            return cls(**json.loads(self.family_kwargs))
        module = _build_sequential(self.program, self)
        return module

    def describe(self) -> str:
        """A one-line human summary, e.g. ``linear 2->32 | relu | linear 32->1``."""
        return " | ".join(_describe_op(op, self) for op in self.program)

    def __repr__(self) -> str:  # keep reprs short: specs appear in error messages
        return f"WeightSpaceSpec({self.describe()}; {self.num_params} params, {len(self.groups)} groups)"


def _strip_dropout(ops: list[dict]) -> list[dict]:
    out = []
    for op in ops:
        if op["kind"] == "dropout":
            continue
        op = dict(op)
        if "children" in op:
            op["children"] = _strip_dropout(op["children"])
        out.append(op)
    return out


# --------------------------------------------------------------------------- families
_FAMILIES: dict[str, Callable[..., nn.Module]] = {}


def register_family(name: str) -> Callable[[type], type]:
    """Class decorator: make ``WeightSpaceSpec.build_module`` able to rebuild this class.

    The class must store its constructor kwargs (JSON-serializable) in
    ``self.wspace_config`` so that :func:`spec_from_module` can record them.
    """

    def deco(cls: type) -> type:
        _FAMILIES[name] = cls
        cls.wspace_family = name
        return cls

    return deco


def get_family(name: str) -> Callable[..., nn.Module]:
    # the built-in families (wspace.families) register themselves when `wspace` is imported
    if name not in _FAMILIES:
        raise WeightSpaceError(f"unknown module family '{name}'; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]


# --------------------------------------------------------------------------- derivation
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
    simple = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.Identity: "identity"}
    for cls, name in simple.items():
        if type(m) is cls:
            return name, {}
    return None


def spec_from_module(model: nn.Module) -> WeightSpaceSpec:
    """Derive the :class:`WeightSpaceSpec` of ``model``.

    Supports ``nn.Sequential`` stacks (nested too) of Linear / Conv1d / Conv2d layers,
    elementwise activations (including :class:`wspace.modules.Sine` for SIRENs),
    pooling, ``Flatten`` after global pooling, dropout and
    :class:`wspace.modules.Residual` blocks. Registered families (see
    :func:`register_family`) record how to rebuild their own class.

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


def _derive_layers(spec: WeightSpaceSpec) -> tuple[LayerSpec, ...]:
    layers = []
    for op in spec.walk():
        if op.kind not in ("linear", "conv"):
            continue
        w = spec.params[op.params[0]]
        b = op.params[1] if len(op.params) > 1 else None
        layers.append(
            LayerSpec(
                index=w.layer, kind=op.kind, in_features=w.shape[1], out_features=w.shape[0],
                kernel=tuple(w.shape[2:]), weight=op.params[0], bias=b, in_group=w.axes[1], out_group=w.axes[0],
            )
        )
    return tuple(layers)


# --------------------------------------------------------------------------- rebuilding
def _build_sequential(ops: tuple[Op, ...], spec: WeightSpaceSpec) -> nn.Sequential:
    return nn.Sequential(OrderedDict((op.name, _build_op(op, spec)) for op in ops))


def _build_op(op: Op, spec: WeightSpaceSpec) -> nn.Module:
    a = dict(op.attrs)
    if op.kind == "sequential":
        return _build_sequential(op.children, spec)
    if op.kind == "residual":
        return Residual(_build_sequential(op.children[0].children, spec))
    if op.kind in ("linear", "conv"):
        w = spec.params[op.params[0]]
        bias = len(op.params) > 1
        if op.kind == "linear":
            return nn.Linear(w.shape[1], w.shape[0], bias=bias)
        conv = nn.Conv1d if a["dims"] == 1 else nn.Conv2d
        return conv(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=a["stride"], padding=a["padding"],
                    dilation=a["dilation"], bias=bias)
    if op.kind == "act":
        name = a.pop("name")
        ctor = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sine": Sine, "sigmoid": nn.Sigmoid,
                "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "softplus": nn.Softplus, "identity": nn.Identity}
        return ctor[name](**a)
    if op.kind == "dropout":
        return nn.Dropout(a["p"])
    if op.kind == "pool":
        cls = {("max", 1): nn.MaxPool1d, ("max", 2): nn.MaxPool2d, ("avg", 1): nn.AvgPool1d, ("avg", 2): nn.AvgPool2d}
        return cls[(a["mode"], a["dims"])](a["kernel"], stride=a["stride"], padding=a["padding"], ceil_mode=a["ceil_mode"])
    if op.kind == "adaptive_pool":
        cls = {("max", 1): nn.AdaptiveMaxPool1d, ("max", 2): nn.AdaptiveMaxPool2d,
               ("avg", 1): nn.AdaptiveAvgPool1d, ("avg", 2): nn.AdaptiveAvgPool2d}
        return cls[(a["mode"], a["dims"])](1)
    if op.kind == "gap":
        return GlobalAvgPool()
    if op.kind == "flatten":
        return nn.Flatten()
    raise WeightSpaceError(f"unknown op kind '{op.kind}' in spec")


def _describe_op(op: Op, spec: WeightSpaceSpec) -> str:
    if op.kind == "linear":
        w = spec.params[op.params[0]]
        return f"linear {w.shape[1]}->{w.shape[0]}"
    if op.kind == "conv":
        w = spec.params[op.params[0]]
        return f"conv{op.attr('dims')}d {w.shape[1]}->{w.shape[0]} k{'x'.join(map(str, w.shape[2:]))}"
    if op.kind == "act":
        return op.attr("name")
    if op.kind == "sequential":
        return " | ".join(_describe_op(c, spec) for c in op.children)
    if op.kind == "residual":
        return f"residual({_describe_op(op.children[0], spec)})"
    return op.kind
