"""NFN: neural functionals with HNP and NP layers (Zhou et al., NeurIPS 2023).

Two symmetry regimes, both realized with the :class:`~wspace.nn.UNFLinear` basis on a
different :class:`~wspace.nn.FeatureLayout`:

* ``"hnp"`` (hidden-neuron permutations, the exact symmetry): network inputs and
  outputs are fixed, folded into channels (``HNPLinear``). Parameters grow with the
  square of ``n_in`` and ``n_out`` (NFN paper, Table 1).
* ``"np"`` (neuron permutations): input units and output units are treated as two
  more permutable groups (``NPLinear``), which makes the layer independent of
  ``n_in`` / ``n_out`` but *too* symmetric; :class:`IOEmbedding` (learned per-unit
  position embeddings added before each layer, NFN's ``io_embed``) breaks that.

For MLPs and 2-d CNNs these are NFN's layers (conv kernel positions folded into
channels, as in NFN); this implementation also accepts 1-d CNNs and residual networks
(residual streams are groups of the spec).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import WeightSpaceError
from ..spec import WeightSpaceSpec
from .common import check_positive
from .features import FeatureLayout, Features, feature_layout
from .feature_encoder import EquivariantFeatureEncoder, FeatureEncoder
from .unf import DEFAULT_MAX_PARAMS, UNFLinear

__all__ = ["IOEmbedding", "HNPLinear", "NPLinear", "NFN", "EquivariantNFN"]

_MODES = ("hnp", "np")


class IOEmbedding(nn.Module):
    """Learned input/output unit embeddings for ``"np"`` features.

    For every tensor axis carrying the input or output group (first-layer weight
    inputs; last-layer weight and bias outputs), a parameter ``[C_i, n_io]`` is added
    along that axis. Equivariant to hidden-neuron permutations, *not* to permutations
    of input or output units (its purpose).

    Shapes: features ``[B, channels * F_i, *kept_i]`` in, same out.
    """

    def __init__(self, layout: FeatureLayout, channels: int, init_std: float = 0.5):
        super().__init__()
        if layout.mode != "np":
            raise WeightSpaceError(f"IOEmbedding needs an 'np' feature layout, got mode '{layout.mode}'")
        check_positive(channels=channels)
        self.layout, self.channels = layout, channels
        io = set(layout.io_groups.values())
        cin = layout.channels(channels)
        self._where: list[tuple[int, int, str]] = []  # (tensor, kept axis, parameter name)
        for i, t in enumerate(layout.tensors):
            for k, g in enumerate(t.groups):
                if g in io:
                    name = f"embedding_{len(self._where)}"
                    self.register_parameter(name, nn.Parameter(torch.randn(cin[i], t.sizes[k]) * init_std))
                    self._where.append((i, k, name))

    def extra_repr(self) -> str:
        return ", ".join(f"{self.layout.tensors[i].key}[axis {self.layout.tensors[i].keep[k]}]" for i, k, _ in self._where)

    def forward(self, feats: Features) -> Features:
        out = list(feats)
        for i, k, name in self._where:
            e = getattr(self, name)
            view = [1, e.shape[0]] + [1] * (out[i].dim() - 2)
            view[2 + k] = e.shape[1]
            out[i] = out[i] + e.reshape(view)
        return tuple(out)


class HNPLinear(UNFLinear):
    """NFN's HNP layer: :class:`UNFLinear` on ``feature_layout(spec, "hnp")``.

    Shapes: ``[B, in_channels * F_i, *hidden axes]`` -> ``[B, out_channels * F_j, ...]``.
    """

    def __init__(self, spec: WeightSpaceSpec, in_channels: int, out_channels: int, **kwargs):
        super().__init__(feature_layout(spec, "hnp"), in_channels, out_channels, **kwargs)


class NPLinear(UNFLinear):
    """NFN's NP layer: :class:`UNFLinear` on ``feature_layout(spec, "np")``, optionally
    preceded by an :class:`IOEmbedding` of its input (``io_embed=True``)."""

    def __init__(self, spec: WeightSpaceSpec, in_channels: int, out_channels: int, *, io_embed: bool = False, **kwargs):
        layout = feature_layout(spec, "np")
        super().__init__(layout, in_channels, out_channels, **kwargs)
        self.io_embed = IOEmbedding(layout, in_channels) if io_embed else None

    def forward(self, feats: Features) -> Features:
        if self.io_embed is not None:
            feats = self.io_embed(feats)
        return super().forward(feats)


def _layer_factory(spec: WeightSpaceSpec, mode: str, io_embed: bool, reduction: str, max_params: int):
    if mode not in _MODES:
        raise WeightSpaceError(f"unknown NFN mode '{mode}'; expected one of {_MODES}")
    if mode == "hnp":
        return lambda ci, co: HNPLinear(spec, ci, co, reduction=reduction, max_params=max_params)
    return lambda ci, co: NPLinear(spec, ci, co, io_embed=io_embed, reduction=reduction, max_params=max_params)


class EquivariantNFN(EquivariantFeatureEncoder):
    """Equivariant NFN ``WeightSpace -> WeightSpace`` (same spec), HNP or NP.

    Args as :class:`NFN`, plus ``residual`` / ``residual_init`` (output ``ws + gamma * f(ws)``).
    """

    def __init__(
        self, spec: WeightSpaceSpec, *, mode: str = "hnp", hidden: int = 32, layers: int = 3, io_embed: bool = True,
        activation: str = "relu", reduction: str = "mean", residual: bool = False, residual_init: float = 1e-2,
        max_params: int = DEFAULT_MAX_PARAMS,
    ):
        make = _layer_factory(spec, mode, io_embed, reduction, max_params)
        super().__init__(
            spec, feature_layout(spec, mode), make, hidden=hidden, layers=layers, activation=activation,
            residual=residual, residual_init=residual_init,
        )
        self.mode = mode


class NFN(FeatureEncoder):
    """Invariant NFN encoder: ``NFN(spec, out_features=k, mode="hnp"|"np")(ws) -> [B, k]``.

    Args:
        spec: the architecture of the input networks.
        out_features: ``k``.
        mode: ``"hnp"`` (exact hidden-neuron symmetry) or ``"np"`` (+ ``io_embed``).
        hidden / layers: channels and number of equivariant layers.
        io_embed: in ``"np"`` mode, add learned input/output embeddings before every layer
            (without them the encoder is also invariant to input/output unit permutations).
        head_hidden / head_layers / activation / reduction / max_params: as :class:`~wspace.nn.UNF`.

    Pooling: HNP pools hidden axes only (inputs/outputs stay as channels), NP pools
    every permuted axis (NFN's ``HNPPool`` / ``NPPool``).
    """

    equivariant = EquivariantNFN

    def __init__(
        self, spec: WeightSpaceSpec, out_features: int, *, mode: str = "hnp", hidden: int = 32, layers: int = 3,
        io_embed: bool = True, head_hidden: int = 128, head_layers: int = 2, activation: str = "relu",
        reduction: str = "mean", max_params: int = DEFAULT_MAX_PARAMS,
    ):
        make = _layer_factory(spec, mode, io_embed, reduction, max_params)
        super().__init__(
            spec, out_features, feature_layout(spec, mode), make, hidden=hidden, layers=layers, head_hidden=head_hidden,
            head_layers=head_layers, activation=activation, pool_reduction=reduction,
        )
        self.mode = mode
