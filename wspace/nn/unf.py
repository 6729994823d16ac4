"""UNF: equivariant linear layers generated from any spec's permutation groups.

Universal Neural Functionals (Zhou, Finn, Harrison, NeurIPS 2024) in PyTorch, batched:

* :class:`UNFLinear`: the complete basis of permutation-equivariant (affine) linear maps
  between weight-space features (:mod:`wspace.nn.basis`), with one learnable channel
  mixing matrix per basis term. Built once per spec; applied with one
  pooling/diagonal op per distinct input core and one matmul per output pattern.
* :class:`InvariantPool`: the complete basis of invariant linear maps of each tensor
  (mean over the permuted axes, plus the mean of the diagonal where two axes share a
  group), concatenated: ``[B, sum_i C_i * n_i]``.
* :class:`UNF` (invariant encoder, ``[B, k]``) and :class:`EquivariantUNF`
  (``WeightSpace -> WeightSpace``), for any spec ``spec_from_module`` accepts: MLPs,
  1-d / 2-d CNNs and residual networks (all tensors writing to a residual stream share
  its group). Network inputs, outputs and conv kernel positions are folded into
  channels (the exact symmetry: hidden-neuron permutations, NFN's "HNP" regime).

Contracts: features are tuples ``[B, C * F_i, *kept_i]`` (:mod:`wspace.nn.features`);
a layer built with ``in_channels=c`` reads ``c * F_i`` channels on tensor ``i``.
Because network inputs/outputs are folded into channels, a first layer with ``n_in``
inputs gives ``F = n_in`` (and conv kernels ``F = n_in * kh * kw``): parameters grow
like ``(c * F)^2``; :class:`UNFLinear` refuses layers above ``max_params`` and points to
``NFN(mode="np")``, whose parameter count does not depend on ``n_in``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightSpaceError
from ..spec import WeightSpaceSpec
from .basis import CoreCache, check_reduction, embed, equivariant_terms
from .common import check_positive
from .feature_encoder import EquivariantFeatureEncoder, FeatureEncoder
from .features import FeatureLayout, Features, check_features, feature_layout
from .pool import InvariantPool

__all__ = ["UNFLinear", "InvariantPool", "UNF", "EquivariantUNF", "add_term", "DEFAULT_MAX_PARAMS"]

DEFAULT_MAX_PARAMS = 20_000_000


def add_term(outs: list[torch.Tensor | None], j: int, y: torch.Tensor, full: tuple[int, ...]) -> None:
    """``outs[j] += y`` for the output sums of one layer call (``y`` broadcastable to ``full``).

    Terms are summed smallest first, so ``outs[j]`` is small until a full-size term
    arrives; a full-size sum made by this call is then added to in place (never a view:
    autograd would rebuild the view's base in backward, a full copy per term).
    """
    acc = outs[j]
    if acc is None:
        outs[j] = y
    elif not acc._is_view() and acc.shape == full:
        acc.add_(y)
    else:
        outs[j] = acc + y


class UNFLinear(nn.Module):
    """Permutation-equivariant affine map between weight-space features.

    Args:
        layout: the feature layout (spec + mode), see :func:`wspace.nn.feature_layout`.
        in_channels / out_channels: feature channels ``c`` (tensor ``i`` has ``c * F_i``).
        bias: add a learnable constant on every output pattern without tied axes (the
            complete set of equivariant constants).
        reduction: how unmatched input blocks are pooled: ``mean`` (default), ``sum``, ``max``
            (``max`` makes the layer nonlinear but keeps it equivariant).
        allow: optional ``allow(i, j)`` restricting which input tensor ``i`` may feed
            output tensor ``j`` (used by :class:`wspace.nn.DWSLayer` blocks).
        max_params: refuse to build a layer with more parameters than this.

    Shapes: ``feats[i]`` ``[B, in_channels * F_i, *kept_i]`` -> ``[B, out_channels * F_j, *kept_j]``.
    Output tensors that no allowed input reaches are zeros.

    Equivariance: for every permutation ``p`` of the layout's groups,
    ``layer(layout.permute(x, p)) == layout.permute(layer(x), p)``.
    """

    def __init__(
        self, layout: FeatureLayout, in_channels: int, out_channels: int, *, bias: bool = True,
        reduction: str = "mean", allow: Callable[[int, int], bool] | None = None, max_params: int = DEFAULT_MAX_PARAMS,
    ):
        super().__init__()
        check_positive(in_channels=in_channels, out_channels=out_channels)
        check_reduction(reduction)
        self.layout = layout
        self.in_channels, self.out_channels, self.reduction = in_channels, out_channels, reduction
        self._cin = layout.channels(in_channels)
        self._cout = layout.channels(out_channels)
        types = [t.groups for t in layout.tensors]

        def present(okey) -> float:  # log-size of the (broadcastable) tensor a term writes
            sizes = layout.tensors[okey.tensor].sizes
            return sum(
                math.log(sizes[a]) for k, b in enumerate(okey.blocks) for a in b if len(b) > 1 or k in okey.tied
            )

        # Per output tensor, smallest terms first: broadcast terms are summed while still
        # small (fewer full-size passes forward, and fewer full reductions in backward);
        # once the sum is full-size, the rest is added in place.
        plan = sorted(equivariant_terms(types, types, allow), key=lambda term: (term[0].tensor, present(term[0])))
        fan = [0] * len(types)
        count = 0
        for okey, cores in plan:
            width = sum(self._cin[c.tensor] for c in cores)
            fan[okey.tensor] += width
            count += self._cout[okey.tensor] * (width + (bias and not okey.tied))
        if count > max_params:
            worst = max(range(len(types)), key=lambda i: layout.tensors[i].factor)
            lay = layout.tensors[worst]
            raise WeightSpaceError(
                f"this equivariant layer would have {count:,} parameters (max_params={max_params:,}): tensor "
                f"'{lay.key}' folds {lay.factor} fixed entries (network inputs/outputs, kernel positions) into "
                f"channels. Use NFN(spec, ..., mode='np'), fewer channels, or raise max_params.",
                tensor=lay.key,
            )
        # Parameters are registered one by one (``weight_<k>``: the channel mixing of output
        # pattern k, over its concatenated cores; ``bias_<k>``) rather than in a
        # ParameterList, so that printing a model stays short.
        self._plan: list[tuple] = []  # (OutKey, cores, weight index, bias index or -1)
        n_bias = 0
        for k, (okey, cores) in enumerate(plan):
            width = sum(self._cin[c.tensor] for c in cores)
            self.register_parameter(f"weight_{k}", nn.Parameter(torch.empty(self._cout[okey.tensor], width)))
            b = -1
            if bias and not okey.tied:
                self.register_parameter(f"bias_{n_bias}", nn.Parameter(torch.empty(self._cout[okey.tensor])))
                b, n_bias = n_bias, n_bias + 1
            self._plan.append((okey, cores, k, b))
        self._n_bias = n_bias
        self._fan = fan
        self.reset_parameters()

    @property
    def weights(self) -> list[nn.Parameter]:
        """The channel-mixing matrices, one per output pattern (``[C_out_j, sum of core channels]``)."""
        return [getattr(self, f"weight_{k}") for k in range(len(self._plan))]

    @property
    def biases(self) -> list[nn.Parameter]:
        """The equivariant constants, one per output pattern without tied axes (``[C_out_j]``)."""
        return [getattr(self, f"bias_{k}") for k in range(self._n_bias)]

    @property
    def num_terms(self) -> int:
        """Number of basis terms (one channel-mixing block each)."""
        return sum(len(cores) for _, cores, _, _ in self._plan)

    def reset_parameters(self) -> None:
        # Var(W) = 1 / (total fan-in of the output tensor): the sum over all basis terms
        # then keeps the activation scale (LeCun-style), whatever the number of terms.
        weights, biases = self.weights, self.biases
        for okey, _, w, b in self._plan:
            bound = math.sqrt(3.0 / max(self._fan[okey.tensor], 1))
            nn.init.uniform_(weights[w], -bound, bound)
            if b >= 0:
                nn.init.zeros_(biases[b])

    def forward_partial(self, feats: Features, cache: CoreCache | None = None) -> list[torch.Tensor | None]:
        """Like :meth:`forward`, but ``None`` for output tensors no allowed input reaches.

        ``cache`` (a :class:`~wspace.nn.basis.CoreCache` of ``feats`` with this layer's
        reduction) lets several layers reading the same features share pooled cores.
        """
        check_features(self.layout, feats, self._cin, type(self).__name__)
        if cache is None:
            cache = CoreCache(feats, self.reduction)
        outs: list[torch.Tensor | None] = [None] * len(self.layout.tensors)
        B = feats[0].shape[0]
        weights, biases = self.weights, self.biases
        for okey, cores, w, b in self._plan:
            parts = [cache.get(ck) for ck in cores]
            z = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            z = F.linear(z.movedim(1, -1), weights[w], biases[b] if b >= 0 else None).movedim(-1, 1)
            y = embed(z, okey.blocks, okey.tied, self.layout.tensors[okey.tensor].sizes)
            j = okey.tensor
            add_term(outs, j, y, (B, self._cout[j], *self.layout.tensors[j].sizes))
        for j, y in enumerate(outs):
            if y is not None:
                outs[j] = y.expand(B, self._cout[j], *self.layout.tensors[j].sizes)
        return outs

    def forward(self, feats: Features) -> Features:
        outs = self.forward_partial(feats)
        ref = feats[0]
        return tuple(
            y if y is not None else ref.new_zeros(ref.shape[0], self._cout[j], *self.layout.tensors[j].sizes)
            for j, y in enumerate(outs)
        )

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, terms={self.num_terms}, mode={self.layout.mode}, reduction={self.reduction}"


class EquivariantUNF(EquivariantFeatureEncoder):
    """Equivariant UNF network ``WeightSpace -> WeightSpace`` (same spec), e.g. for editing.

    Args as :class:`UNF` (``layers`` hidden layers plus one output layer), plus
    ``residual`` / ``residual_init`` (output ``ws + gamma * f(ws)``).
    """

    def __init__(
        self, spec: WeightSpaceSpec, *, hidden: int = 32, layers: int = 3, activation: str = "relu",
        reduction: str = "mean", residual: bool = False, residual_init: float = 1e-2,
        max_params: int = DEFAULT_MAX_PARAMS,
    ):
        layout = feature_layout(spec, "hnp")
        super().__init__(
            spec, layout, lambda ci, co: UNFLinear(layout, ci, co, reduction=reduction, max_params=max_params),
            hidden=hidden, layers=layers, activation=activation, residual=residual, residual_init=residual_init,
        )


class UNF(FeatureEncoder):
    """Invariant UNF encoder for any supported spec: ``UNF(spec, out_features=k)(ws) -> [B, k]``.

    Args:
        spec: the architecture of the input networks.
        out_features: ``k``.
        hidden: feature channels of the equivariant layers.
        layers: number of :class:`UNFLinear` layers (each followed by ``activation``).
        head_hidden / head_layers: the MLP after :class:`InvariantPool`.
        reduction: pooling inside the equivariant layers and in the invariant pool.
        max_params: per-layer parameter cap (see :class:`UNFLinear`).

    Invariant to every hidden-neuron permutation of the spec (residual streams
    included); sensitive to everything else (input/output unit order, kernel layout).
    """

    equivariant = EquivariantUNF

    def __init__(
        self, spec: WeightSpaceSpec, out_features: int, *, hidden: int = 32, layers: int = 3, head_hidden: int = 128,
        head_layers: int = 2, activation: str = "relu", reduction: str = "mean", max_params: int = DEFAULT_MAX_PARAMS,
    ):
        layout = feature_layout(spec, "hnp")
        super().__init__(
            spec, out_features, layout,
            lambda ci, co: UNFLinear(layout, ci, co, reduction=reduction, max_params=max_params),
            hidden=hidden, layers=layers, head_hidden=head_hidden, head_layers=head_layers, activation=activation,
            pool_reduction=reduction,
        )
