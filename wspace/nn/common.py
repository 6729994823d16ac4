"""Small building blocks shared by the encoders: activations on feature tuples, MLP heads."""
from __future__ import annotations


import torch
from torch import nn

from ..errors import WeightSpaceError
from ..modules import ACTIVATIONS
from .features import Features

# the activations an encoder's own layers may use (names of the library's one table, wspace.modules.ACTIVATIONS)
ENCODER_ACTIVATIONS = ("gelu", "leaky_relu", "relu", "silu", "tanh")


def make_activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``gelu``, ``silu``, ``tanh``, ``leaky_relu``)."""
    if name not in ENCODER_ACTIVATIONS:
        raise WeightSpaceError(f"unknown activation '{name}'; expected one of {list(ENCODER_ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_positive(**values: int) -> None:
    """Raise :class:`WeightSpaceError` unless every named value is a positive int."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise WeightSpaceError(f"{name} must be a positive integer, got {v!r}")


class TupleActivation(nn.Module):
    """An elementwise activation applied to every tensor of a feature tuple (equivariant)."""

    def __init__(self, name: str = "relu"):
        super().__init__()
        self.act = make_activation(name)

    def forward(self, feats: Features) -> Features:
        return tuple(self.act(f) for f in feats)


class MLPHead(nn.Module):
    """``[B, in_features]`` -> ``[B, out_features]``: ``layers`` linear layers with
    ``hidden`` units and the activation in between (``layers=1``: a single linear map)."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 128, layers: int = 2, activation: str = "relu"):
        super().__init__()
        check_positive(in_features=in_features, out_features=out_features, hidden=hidden, layers=layers)
        dims = [in_features] + [hidden] * (layers - 1) + [out_features]
        mods: list[nn.Module] = []
        for k in range(layers):
            mods.append(nn.Linear(dims[k], dims[k + 1]))
            if k < layers - 1:
                mods.append(make_activation(activation))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
