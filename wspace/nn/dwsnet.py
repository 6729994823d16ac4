"""DWSNets: equivariant architectures for deep weight spaces (Navon et al., ICML 2023).

A :class:`DWSLayer` is the sum of DWSNets' four blocks, each a module of its own:

* ``weight_to_weight``: every weight tensor -> every weight tensor,
* ``bias_to_weight``: biases -> weights,
* ``weight_to_bias``: weights -> biases,
* ``bias_to_bias``: biases -> biases.

Each block is the complete basis of hidden-permutation-equivariant linear maps
between those tensors, with the first layer's input dimension and the last layer's
output dimension kept (folded into channels), which is DWSNets' symmetry group. This
implementation **shares the basis machinery of** :class:`~wspace.nn.UNFLinear`
(restricted to the block's (input role, output role) pairs) instead of re-deriving
DWSNets' per-case sub-blocks (same / neighbor / non-neighbor layers, first / last
layer); DWSNets' sub-blocks span the same space. DWSNets defaults are kept: ``max``
reduction in the set (DeepSets) pooling and in the invariant head, whose pooling
keeps the input dimension of the first layer and the output dimension of the last
one unpooled (DWSNets' ``InvariantLayer``). DWSNets' set-attention (SAB) sub-blocks
and its down-sampling layer for wide inputs are not implemented.

Beyond the paper: CNN weight spaces (kernel positions folded into channels), MLPs with
fewer than three layers, and layers without biases. Residual networks are refused
(use :class:`~wspace.nn.UNF`): DWSNets' block structure assumes a chain of layers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightSpaceError
from ..spec import WeightSpaceSpec
from .features import FeatureLayout, Features, check_features, feature_layout
from .basis import CoreCache, embed
from .feature_encoder import EquivariantFeatureEncoder, FeatureEncoder
from .unf import DEFAULT_MAX_PARAMS, UNFLinear, add_term

__all__ = ["DWSLayer", "DWSNet", "EquivariantDWSNet", "check_chain"]

BLOCKS = (("weight_to_weight", "weight", "weight"), ("bias_to_weight", "bias", "weight"),
          ("weight_to_bias", "weight", "bias"), ("bias_to_bias", "bias", "bias"))


def check_chain(spec: WeightSpaceSpec, who: str = "DWSNet") -> None:
    """Raise :class:`WeightSpaceError` unless ``spec`` is a chain MLP/CNN (no residual streams)."""
    for g in spec.groups:
        if g.stream:
            users = [p.key for p in spec.params if g.id in p.axes]
            raise WeightSpaceError(
                f"{who} supports chain MLP/CNN weight spaces only, but group {g.id} is a residual stream shared by "
                f"{len(users)} tensors ({', '.join(users[:4])}{', ...' if len(users) > 4 else ''}); "
                "use UNF or NFN for residual networks"
            )


class DWSLayer(nn.Module):
    """One DWSNets layer: the sum of the four blocks (see module docstring).

    Args:
        layout: an ``"hnp"`` feature layout of a chain spec.
        in_channels / out_channels: feature channels.
        reduction: set pooling (``max`` as DWSNets, ``mean`` or ``sum``).
        bias: learnable equivariant constants (in the weight->weight and bias->bias blocks).

    Shapes: ``[B, in_channels * F_i, *kept_i]`` -> ``[B, out_channels * F_i, *kept_i]``.
    ``blocks`` maps block names to their :class:`UNFLinear` (blocks with no tensor
    pair, e.g. bias blocks of a bias-free network, are absent).
    """

    def __init__(
        self, layout: FeatureLayout, in_channels: int, out_channels: int, *, reduction: str = "max", bias: bool = True,
        max_params: int = DEFAULT_MAX_PARAMS,
    ):
        super().__init__()
        if layout.mode != "hnp":
            raise WeightSpaceError(f"DWSLayer needs an 'hnp' feature layout, got mode '{layout.mode}'")
        check_chain(layout.spec, "DWSLayer")
        self.layout, self.reduction = layout, reduction
        roles = [t.role for t in layout.tensors]
        self.blocks = nn.ModuleDict()
        for name, src, dst in BLOCKS:
            if src not in roles or dst not in roles:
                continue
            self.blocks[name] = UNFLinear(
                layout, in_channels, out_channels, reduction=reduction, max_params=max_params,
                bias=bias and src == dst, allow=lambda i, j, s=src, d=dst: roles[i] == s and roles[j] == d,
            )
        self._cin, self._cout = layout.channels(in_channels), layout.channels(out_channels)
        self._fused = self._fused_plan()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Scale each block by the total fan-in over the blocks that write the same tensor
        # so that the sum of blocks keeps the activation scale.
        fan = [0] * len(self.layout.tensors)
        for block in self.blocks.values():
            for j, f in enumerate(block._fan):
                fan[j] += f
        for block in self.blocks.values():
            block.reset_parameters()
            weights = block.weights
            for okey, _, w, _ in block._plan:
                with torch.no_grad():
                    weights[w].mul_(math.sqrt(block._fan[okey.tensor] / max(fan[okey.tensor], 1)))

    def _fused_plan(self) -> list[tuple]:
        """Per output pattern, the (block, weight index, bias index, cores) that write it.

        A pattern fed by several blocks (e.g. a weight tensor's pattern fed by both the
        weight->weight and bias->weight blocks) is then one matmul over the blocks'
        concatenated cores and weights, instead of one per block.
        """
        plan: dict = {}
        for name, block in self.blocks.items():
            for okey, cores, w, b in block._plan:
                plan.setdefault(okey, []).append((name, w, b, cores))
        return sorted(plan.items(), key=lambda kv: (kv[0].tensor, -len(kv[0].tied)))

    def forward(self, feats: Features) -> Features:
        # Equal to summing ``block.forward_partial(feats)`` over the blocks (tested), fused.
        check_features(self.layout, feats, self._cin, type(self).__name__)
        cache = CoreCache(feats, self.reduction)  # the blocks share their pooled inputs
        B = feats[0].shape[0]
        outs: list[torch.Tensor | None] = [None] * len(self.layout.tensors)
        for okey, entries in self._fused:
            z = torch.cat([cache.get(ck) for _, _, _, cores in entries for ck in cores], 1)
            w = torch.cat([getattr(self.blocks[name], f"weight_{k}") for name, k, _, _ in entries], 1)
            biases = [getattr(self.blocks[name], f"bias_{b}") for name, _, b, _ in entries if b >= 0]
            bias = None if not biases else biases[0] if len(biases) == 1 else torch.stack(biases).sum(0)
            z = F.linear(z.movedim(1, -1), w, bias).movedim(-1, 1)
            y = embed(z, okey.blocks, okey.tied, self.layout.tensors[okey.tensor].sizes)
            j = okey.tensor
            add_term(outs, j, y, (B, self._cout[j], *self.layout.tensors[j].sizes))
        ref = feats[0]
        return tuple(
            y.expand(B, self._cout[j], *self.layout.tensors[j].sizes) if y is not None
            else ref.new_zeros(B, self._cout[j], *self.layout.tensors[j].sizes)
            for j, y in enumerate(outs)
        )


def _dws_layout(spec: WeightSpaceSpec) -> FeatureLayout:
    check_chain(spec)
    return feature_layout(spec, "hnp")


class EquivariantDWSNet(EquivariantFeatureEncoder):
    """Equivariant DWSNets ``WeightSpace -> WeightSpace`` (same spec); args as :class:`DWSNet`
    plus ``residual`` / ``residual_init`` (output ``ws + gamma * f(ws)``)."""

    def __init__(
        self, spec: WeightSpaceSpec, *, hidden: int = 32, layers: int = 3, activation: str = "relu",
        reduction: str = "max", residual: bool = False, residual_init: float = 1e-2,
        max_params: int = DEFAULT_MAX_PARAMS,
    ):
        layout = _dws_layout(spec)
        super().__init__(
            spec, layout, lambda ci, co: DWSLayer(layout, ci, co, reduction=reduction, max_params=max_params),
            hidden=hidden, layers=layers, activation=activation, residual=residual, residual_init=residual_init,
        )


class DWSNet(FeatureEncoder):
    """Invariant DWSNets encoder: ``DWSNet(spec, out_features=k)(ws) -> [B, k]``.

    :class:`DWSLayer` x ``layers`` -> invariant pooling (hidden axes, ``reduction``) -> MLP.
    Args as :class:`~wspace.nn.UNF`; ``reduction`` defaults to ``"max"`` (DWSNets).
    Raises :class:`WeightSpaceError` for residual specs.
    """

    equivariant = EquivariantDWSNet

    def __init__(
        self, spec: WeightSpaceSpec, out_features: int, *, hidden: int = 32, layers: int = 3, head_hidden: int = 128,
        head_layers: int = 2, activation: str = "relu", reduction: str = "max", max_params: int = DEFAULT_MAX_PARAMS,
    ):
        layout = _dws_layout(spec)
        super().__init__(
            spec, out_features, layout,
            lambda ci, co: DWSLayer(layout, ci, co, reduction=reduction, max_params=max_params),
            hidden=hidden, layers=layers, head_hidden=head_hidden, head_layers=head_layers, activation=activation,
            pool_reduction=reduction,
        )
