"""The architectures zoos are made of, and their vectorized initializers.

Each family is an ``nn.Sequential`` registered with :func:`wspace.spec.register_family`
that keeps its constructor kwargs (JSON-serializable, tuples stored as lists) in
``self.wspace_config``, so ``spec_from_module(model).build_module()`` rebuilds the same
class. Parametric children have stable names (``fc0``, ``conv1``, ``head``...) that do
not depend on dropout, so all members of a hyper-parameter grid share state_dict keys.

* :class:`MLPClassifier`: ``fc0 -> act0 [-> drop0] -> ... -> fcL`` (digits 64 -> 10).
* :class:`SmallCNN`: 3x3 convs (padding ``k // 2``, strides ``(1, 2, 2)``), global
  average pooling, linear head; ``dims=2`` for 8x8 images, ``dims=1`` for MNIST-1D.
  With ``channels=(16, 16, 16)`` it has the Small CNN Zoo's 4,970 parameters.
* :class:`SIREN`: ``fc0 -> sine0 -> ... -> fcL`` with the SIREN initialization.

:func:`init_weight_space` draws B networks of a family at once, with the Model Zoos
initialization grid or the SIREN scheme (one tensor op per parameter).
"""
from __future__ import annotations

import functools
import json
import math
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from wspace.errors import WeightSpaceError
from wspace.modules import ACTIVATION_ALIASES, GlobalAvgPool, Sine
from wspace.modules import ACTIVATIONS as MODULE_ACTIVATIONS
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec, get_family, register_family, spec_from_module

__all__ = [
    "MLPClassifier",
    "SmallCNN",
    "SIREN",
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "ZOO_BIAS_VALUE",
    "build_family",
    "family_spec",
    "init_weight_space",
    "init_module_",
]

# The activations the families are built with: a subset of the core table
# (``wspace.modules.ACTIVATIONS``), whose aliases (``leakyrelu``, ``swish``) they accept.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    k: MODULE_ACTIVATIONS[k] for k in ("relu", "tanh", "sigmoid", "gelu", "leaky_relu", "silu")
}


def _activation(name: str) -> str:
    key = ACTIVATION_ALIASES.get(name, name)
    if key not in ACTIVATIONS:
        raise WeightSpaceError(f"unknown activation '{name}'; choose one of {sorted(ACTIVATIONS)}")
    return key


def _ints(value: int | Sequence[int], what: str) -> list[int]:
    vals = [value] if isinstance(value, int) else list(value)
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in vals):
        raise WeightSpaceError(f"{what} must be positive integers, got {value!r}")
    return vals


def _dropout(p: float) -> float:
    if not 0.0 <= float(p) < 1.0:
        raise WeightSpaceError(f"dropout must be in [0, 1), got {p}")
    return float(p)


@register_family("mlp")
class MLPClassifier(nn.Sequential):
    """Fully connected classifier ``in_features -> hidden... -> num_classes``.

    Children: ``fc{i}``, ``act{i}``, ``drop{i}`` (only when ``dropout > 0``), last
    layer ``fc{len(hidden)}``. ``hidden=()`` gives a linear (logistic) model.
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: Sequence[int] = (32,),
        num_classes: int = 10,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        hidden = _ints(hidden, "hidden") if hidden else []
        act = _activation(activation)
        p = _dropout(dropout)
        widths = [in_features, *hidden, num_classes]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(len(widths) - 1):
            layers[f"fc{i}"] = nn.Linear(widths[i], widths[i + 1], bias=bool(bias))
            if i < len(widths) - 2:
                layers[f"act{i}"] = ACTIVATIONS[act]()
                if p > 0:
                    layers[f"drop{i}"] = nn.Dropout(p)
        super().__init__(layers)
        self.wspace_config = dict(in_features=int(in_features), hidden=hidden, num_classes=int(num_classes),
                                  activation=act, dropout=p, bias=bool(bias))


@register_family("small_cnn")
class SmallCNN(nn.Sequential):
    """Small CNN in the style of the Small CNN Zoo, sized for 8x8 digits or MNIST-1D.

    ``conv{i}`` (kernel ``kernel_size``, padding ``kernel_size // 2``, stride
    ``strides[i]``) ``-> act{i} [-> drop{i}]`` for each entry of ``channels``, then
    ``pool`` (global average), ``head`` (linear to ``num_classes``). ``dims=2`` takes
    ``[C, H, W]`` images (8x8: 8 -> 8 -> 4 -> 2 with the default strides), ``dims=1``
    ``[C, L]`` signals (MNIST-1D: 40 -> 40 -> 20 -> 10).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 16, 16),
        num_classes: int = 10,
        kernel_size: int = 3,
        activation: str = "relu",
        dropout: float = 0.0,
        strides: Sequence[int] = (1, 2, 2),
        dims: int = 2,
    ):
        channels = _ints(channels, "channels")
        strides = _ints(strides, "strides")
        if len(strides) != len(channels):
            raise WeightSpaceError(f"SmallCNN needs one stride per conv layer: channels={channels}, strides={strides}")
        if dims not in (1, 2):
            raise WeightSpaceError(f"SmallCNN dims must be 1 or 2, got {dims}")
        act = _activation(activation)
        p = _dropout(dropout)
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = in_channels
        for i, (c, s) in enumerate(zip(channels, strides)):
            layers[f"conv{i}"] = conv(c_in, c, kernel_size, stride=s, padding=kernel_size // 2)
            layers[f"act{i}"] = ACTIVATIONS[act]()
            if p > 0:
                layers[f"drop{i}"] = nn.Dropout(p)
            c_in = c
        layers["pool"] = GlobalAvgPool()
        layers["head"] = nn.Linear(c_in, num_classes)
        super().__init__(layers)
        self.wspace_config = dict(in_channels=int(in_channels), channels=channels, num_classes=int(num_classes),
                                  kernel_size=int(kernel_size), activation=act, dropout=p, strides=strides, dims=int(dims))


@register_family("siren")
class SIREN(nn.Sequential):
    """SIREN (Sitzmann et al. 2020): ``fc0 -> sine0 -> ... -> fcL`` (linear output).

    ``sine0`` uses ``w0_initial`` (default ``w0``), the others ``w0``. Initialized as
    in the paper (see :func:`init_weight_space`, scheme ``"siren"``) from torch's
    global RNG; DWSNets' INR zoo is ``SIREN(2, (32, 32), 1, 30.0)`` (1,185 params).
    """

    def __init__(
        self,
        in_features: int = 2,
        hidden: Sequence[int] = (32, 32),
        out_features: int = 1,
        w0: float = 30.0,
        w0_initial: float | None = None,
    ):
        hidden = _ints(hidden, "hidden")
        widths = [in_features, *hidden, out_features]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(len(widths) - 1):
            layers[f"fc{i}"] = nn.Linear(widths[i], widths[i + 1])
            if i < len(widths) - 2:
                layers[f"sine{i}"] = Sine(w0 if (i > 0 or w0_initial is None) else w0_initial)
        super().__init__(layers)
        self.wspace_config = dict(in_features=int(in_features), hidden=hidden, out_features=int(out_features),
                                  w0=float(w0), w0_initial=None if w0_initial is None else float(w0_initial))
        init_module_(self, "siren")


# --------------------------------------------------------------------------- helpers
def build_family(name: str, **kwargs: Any) -> nn.Module:
    """``build_family("mlp", hidden=[16])``: a fresh module of a registered family."""
    return get_family(name)(**kwargs)


def family_spec(name: str, **kwargs: Any) -> WeightSpaceSpec:
    """The :class:`WeightSpaceSpec` of ``build_family(name, **kwargs)`` (cached)."""
    return _family_spec(name, json.dumps(kwargs, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _family_spec(name: str, kwargs_json: str) -> WeightSpaceSpec:
    return spec_from_module(build_family(name, **json.loads(kwargs_json)))


# --------------------------------------------------------------------------- initialization
INIT_SCHEMES = ("default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "uniform", "normal",
                "siren")
ZOO_BIAS_VALUE = 0.01  # Model Zoos' init grid sets every bias to this constant


def _fans(spec: WeightSpaceSpec, layer_index: int) -> tuple[int, int]:
    layer = spec.layers[layer_index]
    k = math.prod(layer.kernel) if layer.kernel else 1
    return layer.in_features * k, layer.out_features * k


def _siren_w0(spec: WeightSpaceSpec) -> list[float]:
    """Per parametric layer, the w0 its SIREN init divides by: that of the sine right
    after it, or for the output layer that of the last sine before it."""
    per_layer: list[float | None] = []
    last: float | None = None
    for op in spec.walk():
        if op.kind in ("linear", "conv"):
            per_layer.append(None)
        elif op.kind == "act" and op.attr("name") == "sine":
            last = float(op.attr("w0"))
            if per_layer and per_layer[-1] is None:
                per_layer[-1] = last
    if last is None:
        raise WeightSpaceError(f"init scheme 'siren' needs sine activations; {spec!r} has none")
    out, prev = [], None
    for w in per_layer:
        prev = w if w is not None else prev
        out.append(w if w is not None else prev)
    return out


def init_weight_space(
    spec: WeightSpaceSpec | str,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    scheme: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **family_kwargs: Any,
) -> WeightSpace:
    """``batch_size`` freshly initialized networks, one random tensor op per parameter.

    ``spec`` is a spec or a family name (then ``family_kwargs`` configure it). Fans come
    from the spec's layers (``fan_in = in * prod(kernel)``, ``fan_out = out * prod(kernel)``).

    Schemes (weights; biases):

    * ``"default"``: PyTorch's Linear/Conv init, ``U(+-1/sqrt(fan_in))`` for both.
    * Model Zoos grid (``torch.nn.init`` defaults, biases = ``ZOO_BIAS_VALUE`` 0.01):
      ``"kaiming_uniform"`` ``U(+-sqrt(6/fan_in))``; ``"kaiming_normal"``
      ``N(0, 2/fan_in)``; ``"xavier_uniform"`` ``U(+-sqrt(6/(fan_in+fan_out)))``;
      ``"xavier_normal"`` ``N(0, 2/(fan_in+fan_out))``; ``"uniform"`` ``U(0, 1)``;
      ``"normal"`` ``N(0, 1)``.
    * ``"siren"``: first layer ``U(+-1/fan_in)``, later layers
      ``U(+-sqrt(6/fan_in)/w0)``; biases PyTorch default (as the SIREN reference code).

    ``scheme=None`` picks ``"siren"`` for networks with sine activations, else ``"default"``.
    """
    if isinstance(spec, str):
        spec = family_spec(spec, **family_kwargs)
    elif family_kwargs:
        raise WeightSpaceError("family kwargs are only accepted with a family name, not with a spec")
    if scheme is None:
        scheme = "siren" if "sine" in spec.activations else "default"
    if scheme not in INIT_SCHEMES:
        raise WeightSpaceError(f"unknown init scheme '{scheme}'; choose one of {INIT_SCHEMES}")
    if batch_size < 1:
        raise WeightSpaceError(f"batch_size must be >= 1, got {batch_size}")
    w0 = _siren_w0(spec) if scheme == "siren" else None
    kw = dict(generator=generator, device=device, dtype=dtype)

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, **kw)

    def normal(shape: tuple[int, ...], std: float) -> torch.Tensor:
        return std * torch.randn(shape, **kw)

    tensors = []
    for p in spec.params:
        shape = (batch_size, *p.shape)
        fan_in, fan_out = _fans(spec, p.layer)
        default_bound = 1.0 / math.sqrt(fan_in)
        if p.role == "bias":
            if scheme in ("default", "siren"):
                t = uniform(shape, -default_bound, default_bound)
            else:
                t = torch.full(shape, ZOO_BIAS_VALUE, device=device, dtype=dtype)
        elif scheme == "default":
            t = uniform(shape, -default_bound, default_bound)
        elif scheme == "kaiming_uniform":
            b = math.sqrt(6.0 / fan_in)
            t = uniform(shape, -b, b)
        elif scheme == "kaiming_normal":
            t = normal(shape, math.sqrt(2.0 / fan_in))
        elif scheme == "xavier_uniform":
            b = math.sqrt(6.0 / (fan_in + fan_out))
            t = uniform(shape, -b, b)
        elif scheme == "xavier_normal":
            t = normal(shape, math.sqrt(2.0 / (fan_in + fan_out)))
        elif scheme == "uniform":
            t = uniform(shape, 0.0, 1.0)
        elif scheme == "normal":
            t = normal(shape, 1.0)
        else:  # siren
            b = 1.0 / fan_in if p.layer == 0 else math.sqrt(6.0 / fan_in) / w0[p.layer]
            t = uniform(shape, -b, b)
        tensors.append(t)
    return WeightSpace(spec, tensors)


@torch.no_grad()
def init_module_(module: nn.Module, scheme: str | None = None, generator: torch.Generator | None = None) -> nn.Module:
    """Re-initialize one module in place with an :func:`init_weight_space` scheme."""
    spec = spec_from_module(module)
    ref = next(module.parameters())
    ws = init_weight_space(spec, 1, generator=generator, scheme=scheme, device=ref.device, dtype=ref.dtype)
    module.load_state_dict(ws.to_state_dicts()[0])
    return module
