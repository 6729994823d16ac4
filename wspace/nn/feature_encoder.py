"""Encoders built from weight-space feature layers (the shared shape of UNF, NFN and DWSNets).

* :class:`EquivariantBody`: ``layers`` equivariant layers ``1 -> hidden -> ... -> hidden``.
* :class:`FeatureEncoder` (an :class:`~wspace.nn.Encoder`): encode to 1-channel features
  -> body -> :class:`~wspace.nn.InvariantPool` (:meth:`~FeatureEncoder.features`) ->
  :class:`~wspace.nn.MLPHead`.
* :class:`EquivariantFeatureEncoder` (an :class:`~wspace.nn.EquivariantEncoder`):
  encode -> body -> a last equivariant layer to 1 channel -> decode.

A subclass picks the :class:`~wspace.nn.FeatureLayout` and the layer factory
``make_layer(in_channels, out_channels)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..space import WeightSpace
from ..spec import WeightSpaceSpec
from .common import MLPHead, TupleActivation, check_positive
from .encoder import Encoder, EquivariantEncoder
from .features import FeatureLayout, Features
from .pool import InvariantPool

__all__ = ["LayerFactory", "EquivariantBody", "FeatureEncoder", "EquivariantFeatureEncoder"]

LayerFactory = Callable[[int, int], nn.Module]  # (in_channels, out_channels) -> features-to-features layer


class EquivariantBody(nn.Module):
    """``layers`` equivariant layers ``1 -> hidden -> ... -> hidden``, each followed by the activation."""

    def __init__(self, make_layer: LayerFactory, hidden: int, layers: int, activation: str = "relu"):
        super().__init__()
        check_positive(hidden=hidden, layers=layers)
        self.layers = nn.ModuleList(make_layer(1 if k == 0 else hidden, hidden) for k in range(layers))
        self.act = TupleActivation(activation)

    def forward(self, feats: Features) -> Features:
        for layer in self.layers:
            feats = self.act(layer(feats))
        return feats


class FeatureEncoder(Encoder):
    """Invariant encoder ``WeightSpace [B]`` -> ``[B, out_features]`` over a feature layout.

    :meth:`hidden_features` (equivariant, ``[B, hidden * F_i, *kept_i]`` per tensor) ->
    :class:`InvariantPool` (:meth:`features`, ``[B, d]``) -> :class:`MLPHead`.
    """

    invariant_only_options = ("head_hidden", "head_layers")

    def __init__(
        self, spec: WeightSpaceSpec, out_features: int, layout: FeatureLayout, make_layer: LayerFactory, *,
        hidden: int, layers: int, head_hidden: int, head_layers: int, activation: str, pool_reduction: str,
    ):
        super().__init__(spec, out_features)
        self.layout = layout
        self.body = EquivariantBody(make_layer, hidden, layers, activation)
        self.pool = InvariantPool(layout, hidden, pool_reduction)
        self.head = MLPHead(self.pool.out_features, out_features, head_hidden, head_layers, activation)

    def hidden_features(self, ws: WeightSpace) -> Features:
        """The equivariant hidden features ``[B, hidden * F_i, *kept_i]`` of ``ws``."""
        self.check_input(ws)
        return self.body(self.layout.encode(ws))

    def features(self, ws: WeightSpace) -> torch.Tensor:
        """The pooled invariant embedding ``[B, pool.out_features]``."""
        return self.pool(self.hidden_features(ws))


class EquivariantFeatureEncoder(EquivariantEncoder):
    """Equivariant encoder ``WeightSpace [B]`` -> ``WeightSpace [B]`` (same spec) over a feature layout.

    encode -> :class:`EquivariantBody` -> a last equivariant layer to 1 channel -> decode;
    ``residual`` / ``residual_init`` as :class:`~wspace.nn.EquivariantEncoder`.
    """

    def __init__(
        self, spec: WeightSpaceSpec, layout: FeatureLayout, make_layer: LayerFactory, *, hidden: int, layers: int,
        activation: str, residual: bool, residual_init: float,
    ):
        super().__init__(spec, residual=residual, residual_init=residual_init)
        self.layout = layout
        self.body = EquivariantBody(make_layer, hidden, layers, activation)
        self.out = make_layer(hidden, 1)

    def hidden_features(self, ws: WeightSpace) -> Features:
        """The equivariant hidden features ``[B, hidden * F_i, *kept_i]`` of ``ws``."""
        return self.body(self.layout.encode(ws))

    def delta(self, ws: WeightSpace) -> WeightSpace:
        return self.layout.decode(self.out(self.hidden_features(ws)))
