"""Small building blocks that weight-space specs understand.

Plain ``torch.nn`` has no sine activation, no residual wrapper and no global
average pooling layer; these are the library's versions. Their state_dict keys are
stable so that :func:`wspace.spec_from_module` and ``WeightSpaceSpec.build_module``
agree.

:data:`ACTIVATIONS` is the library's one table of activation names (the names a
:class:`~wspace.spec.WeightSpaceSpec` records, the classes that build them);
:data:`ACTIVATION_ALIASES` maps the other spellings found in public zoos' configs.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import WeightSpaceError

__all__ = ["Sine", "Residual", "GlobalAvgPool", "ACTIVATIONS", "ACTIVATION_ALIASES", "activation_name",
           "activation_module"]


class Sine(nn.Module):
    """``sin(w0 * x)``: the SIREN activation (Sitzmann et al., 2020)."""

    def __init__(self, w0: float = 30.0):
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Residual(nn.Module):
    """``x + block(x)``. The block must map the stream to the same shape.

    The layers that read from and write into the residual stream share one
    permutation group in the weight-space spec.
    """

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.block = layers[0] if len(layers) == 1 and isinstance(layers[0], nn.Sequential) else nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class GlobalAvgPool(nn.Module):
    """Mean over all spatial axes: ``[N, C, *spatial] -> [N, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)


# The spec's activation name -> the module class that builds it (keyword arguments are the
# attributes the spec stores: ``w0`` for sine, ``negative_slope`` for leaky_relu...).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sine": Sine,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}

# Other spellings (Model Zoos configs, SIREN papers, "linear" for no activation).
ACTIVATION_ALIASES: dict[str, str] = {
    "leakyrelu": "leaky_relu",
    "swish": "silu",
    "linear": "identity",
    "sin": "sine",
    "siren": "sine",
}


def activation_name(name: str, *, lower: bool = False) -> str:
    """The canonical name of activation ``name`` (aliases resolved; ``lower``: case-insensitive).

    Raises:
        WeightSpaceError: for a name that is not in :data:`ACTIVATIONS` or its aliases.
    """
    key = str(name).lower() if lower else str(name)
    key = ACTIVATION_ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise WeightSpaceError(f"unknown activation '{name}'; known: {sorted(ACTIVATIONS)}")
    return key


def activation_module(name: str | nn.Module, w0: float = 30.0) -> nn.Module:
    """An activation module from a name (case-insensitive; ``sine`` takes ``w0``); a module
    is returned as it is."""
    if isinstance(name, nn.Module):
        return name
    key = activation_name(name, lower=True)
    return Sine(float(w0)) if key == "sine" else ACTIVATIONS[key]()
