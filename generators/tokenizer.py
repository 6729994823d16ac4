"""Weight tokenizer: ``WeightSpace <-> [B, T, C]`` tokens, lossless, with masks and indices.

Each parametric layer is laid out neuron-major: row ``o`` holds output unit ``o``'s
incoming weights (``in * prod(kernel)`` values) followed by its bias. The layer is then
cut into tokens of ``chunk_size`` values:

* ``per_neuron=False`` (D2NWG / IGPG style): the layer's rows are concatenated and
  chunked; the last token of the layer is zero-padded.
* ``per_neuron=True`` (SANE style): every row starts a new token (a row longer than
  ``chunk_size`` spans several tokens), so token ``t`` of the output layer describes
  exactly one output unit (one class).
* ``neuron_centric=True``: like ``per_neuron``, but the output layer's weight *columns*
  join the tokens of the last hidden layer: token ``j`` of that layer holds hidden
  neuron ``j``'s incoming weights, its bias **and** its outgoing weights
  ``W_out[:, j]``, so everything that depends on neuron ``j`` sits in one token. The
  output bias gets its own token(s). Needs a last layer that is linear and reads the
  previous layer's units directly (MLP, SIREN, CNN after global pooling).

Every token carries ``layer_index``, ``chunk_index`` (position inside its layer) and
``neuron_index`` (its output unit, ``-1`` when a token spans several units),
``role_index`` (tokens that a neuron permutation can exchange share it: a
permutation-equivariant replacement for a positional index); ``mask``
``[T, C]`` marks the real values (padding is never part of a loss).

Values are standardized per parameter tensor with a mean and a std fitted on the
training zoo (:meth:`WeightTokenizer.fit`: a :class:`wspace.standardize.WeightStats`, the
core's per-tensor standardization shared with datasets and augmentations) and stored with the tokenizer
(:meth:`save` / :meth:`load`: JSON config + safetensors). The layout round trip is exact;
with standardization it is exact in float64 (the arithmetic runs in float64 and is
rounded once back to the weights' dtype).

Optionally the zoo is canonicalized first (:func:`canonicalize`): every network is
permuted onto a reference with Git Re-Basin weight matching, so that the generator does
not have to model permuted copies of the same solution.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, load_safetensors, read_json, save_safetensors
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec
from wspace.standardize import WeightStats

__all__ = ["WeightTokenizer", "TokenLayout", "canonicalize", "neuron_centric_supported"]

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_WEIGHTS = "tokenizer.safetensors"


@dataclass(frozen=True)
class TokenLayout:
    """Where every value of a flat network goes in the token grid.

    ``src`` ``[N]`` indexes the flat vector ``ws.flatten()``, ``dst`` ``[N]`` the flat
    token grid ``T * C``; ``param`` ``[N]`` names the parameter tensor of each value.
    """

    num_tokens: int
    chunk_size: int
    src: torch.Tensor
    dst: torch.Tensor
    param: torch.Tensor
    mask: torch.Tensor  # [T, C] bool
    layer_index: torch.Tensor  # [T]
    chunk_index: torch.Tensor  # [T]
    neuron_index: torch.Tensor  # [T]
    is_output: torch.Tensor  # [T] bool: token of the last parametric layer
    role_index: torch.Tensor  # [T]: equal for tokens exchanged by hidden-neuron permutations
    neuron_centric: bool = False

    @property
    def num_roles(self) -> int:
        return int(self.role_index.max()) + 1 if self.role_index.numel() else 0


def neuron_centric_supported(spec: WeightSpaceSpec) -> bool:
    """Whether the output layer's columns can join the last hidden layer's tokens."""
    if len(spec.layers) < 2:
        return False
    last, prev = spec.layers[-1], spec.layers[-2]
    return (last.kind == "linear" and last.in_group is not None and last.in_group == prev.out_group
            and last.in_features == prev.out_features)


def _layout(spec: WeightSpaceSpec, chunk_size: int, per_neuron: bool, neuron_centric: bool = False) -> TokenLayout:
    offsets, o = [], 0
    for p in spec.params:
        offsets.append(o)
        o += p.numel
    src_parts, dst_parts, par_parts = [], [], []
    layer_idx, chunk_idx, neuron_idx, role_idx = [], [], [], []
    t0, r0 = 0, 0
    n_layers = len(spec.layers)
    if neuron_centric and not neuron_centric_supported(spec):
        raise WeightSpaceError(f"a neuron-centric layout needs a last linear layer reading the previous layer's "
                               f"units; {spec.describe()} has none")
    for li, layer in enumerate(spec.layers):
        wp = spec.params[layer.weight]
        out = wp.shape[0]
        fan = wp.numel // out
        # rows: [out, fan (+1)] of flat indices into the network vector
        w_idx = offsets[layer.weight] + torch.arange(wp.numel).view(out, fan)
        p_idx = torch.full((out, fan), layer.weight)
        if neuron_centric and li == n_layers - 1:  # only the output bias is left: one row
            if layer.bias is None:
                break
            w_idx = offsets[layer.bias] + torch.arange(out).view(1, out)
            p_idx = torch.full((1, out), layer.bias)
            out, fan = 1, 0
        elif layer.bias is not None:
            b_idx = offsets[layer.bias] + torch.arange(out).view(out, 1)
            w_idx = torch.cat([w_idx, b_idx], 1)
            p_idx = torch.cat([p_idx, torch.full((out, 1), layer.bias)], 1)
        if neuron_centric and li == n_layers - 2:  # append W_out[:, j] to hidden neuron j's row
            nxt = spec.layers[-1]
            op = spec.params[nxt.weight]
            cols = offsets[nxt.weight] + torch.arange(op.numel).view(op.shape[0], op.shape[1]).t()
            w_idx = torch.cat([w_idx, cols], 1)
            p_idx = torch.cat([p_idx, torch.full(cols.shape, nxt.weight)], 1)
        row = w_idx.shape[1]
        equivariant = li < n_layers - 1 and layer.out_group is not None  # its rows can be permuted
        if per_neuron or neuron_centric:
            per_row = math.ceil(row / chunk_size)
            col = torch.arange(row)
            dst = (t0 + torch.arange(out)[:, None] * per_row + col[None, :] // chunk_size) * chunk_size \
                + col[None, :] % chunk_size
            n_tok = out * per_row
            neuron = torch.arange(out).repeat_interleave(per_row)
            within = torch.arange(per_row).repeat(out)
            role = r0 + (within if equivariant else torch.arange(n_tok))
        else:
            n_tok = math.ceil(out * row / chunk_size)
            dst = t0 * chunk_size + torch.arange(out * row).view(out, row)
            starts = torch.arange(n_tok) * chunk_size
            first, last = starts // row, torch.clamp(starts + chunk_size - 1, max=out * row - 1) // row
            neuron = torch.where(first == last, first, torch.full_like(first, -1))
            role = r0 + torch.arange(n_tok)  # chunks mix neurons: no permutation-invariant role
        if neuron_centric and li == n_layers - 1:
            neuron = torch.full((n_tok,), -1)
        src_parts.append(w_idx.reshape(-1))
        dst_parts.append(dst.reshape(-1))
        par_parts.append(p_idx.reshape(-1))
        layer_idx.append(torch.full((n_tok,), li))
        chunk_idx.append(torch.arange(n_tok))
        neuron_idx.append(neuron)
        role_idx.append(role)
        t0 += n_tok
        r0 = int(role.max()) + 1
    src, dst = torch.cat(src_parts), torch.cat(dst_parts)
    if src.numel() != spec.num_params:
        raise WeightSpaceError(f"the tokenizer supports networks whose parameters all belong to linear/conv layers; "
                               f"{spec!r} has {spec.num_params - src.numel()} other parameters")
    mask = torch.zeros(t0 * chunk_size, dtype=torch.bool)
    mask[dst] = True
    li = torch.cat(layer_idx)
    return TokenLayout(t0, chunk_size, src, dst, torch.cat(par_parts), mask.view(t0, chunk_size), li,
                       torch.cat(chunk_idx), torch.cat(neuron_idx), li == n_layers - 1, torch.cat(role_idx),
                       bool(neuron_centric))


class WeightTokenizer:
    """Lossless tokenizer of one architecture (see the module docstring).

    Example::

        tok = WeightTokenizer(zoo.spec, chunk_size=64).fit(zoo.weights())
        tokens = tok.tokenize(ws)            # [B, T, C], standardized, zero padding
        ws2 = tok.detokenize(tokens)         # == ws up to float rounding
    """

    def __init__(self, spec: WeightSpaceSpec, chunk_size: int = 64, per_neuron: bool = True,
                 mean: torch.Tensor | None = None, std: torch.Tensor | None = None, neuron_centric: bool = False):
        if chunk_size < 1:
            raise WeightSpaceError(f"chunk_size must be >= 1, got {chunk_size}")
        self.spec = spec
        self.chunk_size = int(chunk_size)
        self.per_neuron = bool(per_neuron)
        self.neuron_centric = bool(neuron_centric)
        self.layout = _layout(spec, self.chunk_size, self.per_neuron, self.neuron_centric)
        n = len(spec.params)
        mean = torch.zeros(n, dtype=torch.float64) if mean is None else mean.double().clone()
        std = torch.ones(n, dtype=torch.float64) if std is None else std.double().clone()
        if mean.shape != (n,) or std.shape != (n,):
            raise WeightSpaceError(f"normalization stats must have one value per parameter tensor ({n})")
        if not bool((std > 0).all()):
            raise WeightSpaceError("normalization stds must be positive")
        self.stats = WeightStats(spec, mean, std)

    # ------------------------------------------------------------------ properties
    @property
    def num_tokens(self) -> int:
        return self.layout.num_tokens

    @property
    def mask(self) -> torch.Tensor:
        """``[T, C]`` bool: True at real values, False at padding."""
        return self.layout.mask

    @property
    def mean(self) -> torch.Tensor:
        """``[P]`` float64: the mean of every parameter tensor (``self.stats.mean``)."""
        return self.stats.mean

    @property
    def std(self) -> torch.Tensor:
        """``[P]`` float64: the std of every parameter tensor (``self.stats.std``)."""
        return self.stats.std

    @property
    def fitted(self) -> bool:
        return not (bool((self.mean == 0).all()) and bool((self.std == 1).all()))

    # ------------------------------------------------------------------ stats
    def fit(self, ws: WeightSpace) -> "WeightTokenizer":
        """Fit the per-tensor mean and std on a zoo (``ws``) with
        :meth:`wspace.standardize.WeightStats.from_weights`; returns ``self``."""
        self._check(ws)
        self.stats = WeightStats.from_weights(ws)
        return self

    def _check(self, ws: WeightSpace) -> None:
        if not isinstance(ws, WeightSpace):
            raise WeightSpaceError(f"expected a WeightSpace, got {type(ws).__name__}")
        if not ws.spec.same_space(self.spec):
            raise WeightSpaceError(f"this tokenizer is for {self.spec.describe()}, got {ws.spec.describe()}")

    # ------------------------------------------------------------------ conversion
    def tokenize(self, ws: WeightSpace, normalize: bool = True, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``[B, T, C]`` tokens of ``ws`` (padding = 0). ``dtype`` defaults to the weights' dtype."""
        self._check(ws)
        dtype = dtype or ws.dtype
        if normalize:  # in float64, rounded once to `dtype` below
            ws = self.stats.normalize(ws.to(torch.float64))
        flat = ws.flatten()
        B, dev = flat.shape[0], flat.device
        lay = self.layout
        vals = flat[:, lay.src.to(dev)]
        out = torch.zeros(B, lay.num_tokens * lay.chunk_size, dtype=dtype, device=dev)
        out.index_copy_(1, lay.dst.to(dev), vals.to(dtype))  # index_copy_: much faster than index_put_ on CPU
        return out.view(B, lay.num_tokens, lay.chunk_size)

    def detokenize(self, tokens: torch.Tensor, normalize: bool = True, dtype: torch.dtype = torch.float32
                   ) -> WeightSpace:
        """The networks of ``[B, T, C]`` tokens (padding ignored), as a WeightSpace of ``dtype``."""
        lay = self.layout
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (lay.num_tokens, lay.chunk_size):
            raise WeightSpaceError(f"tokens must be [B, {lay.num_tokens}, {lay.chunk_size}], got "
                                   f"{tuple(tokens.shape)}")
        dev = tokens.device
        vals = tokens.reshape(tokens.shape[0], -1)[:, lay.dst.to(dev)]
        work = torch.float64 if normalize else dtype  # denormalize in float64, round once to `dtype`
        flat = torch.empty(tokens.shape[0], self.spec.num_params, dtype=work, device=dev)
        flat = flat.index_copy(1, lay.src.to(dev), vals.to(work))  # out of place: differentiable
        ws = WeightSpace.from_flat(self.spec, flat)
        return self.stats.denormalize(ws).to(dtype) if normalize else ws

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict:
        return {"spec": json.loads(self.spec.to_json()), "chunk_size": self.chunk_size, "per_neuron": self.per_neuron,
                "neuron_centric": self.neuron_centric}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``tokenizer_config.json`` and ``tokenizer.safetensors`` (the stats) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_write(d / TOKENIZER_CONFIG) as f:
            json.dump(self.config(), f, indent=2)
        save_safetensors(d / TOKENIZER_WEIGHTS, self.state_tensors())

    @classmethod
    def from_config(cls, config: dict, tensors: dict[str, torch.Tensor] | None = None) -> "WeightTokenizer":
        spec = WeightSpaceSpec.from_json(json.dumps(config["spec"]))
        tensors = tensors or {}
        return cls(spec, int(config["chunk_size"]), bool(config.get("per_neuron", True)),
                   tensors.get("mean"), tensors.get("std"), bool(config.get("neuron_centric", False)))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "WeightTokenizer":
        """Read a tokenizer written by :meth:`save`."""
        d = Path(directory)
        config = read_json(d / TOKENIZER_CONFIG, missing="no tokenizer config here")
        tensors, _ = load_safetensors(d / TOKENIZER_WEIGHTS)
        return cls.from_config(config, tensors)

    def __repr__(self) -> str:
        return (f"WeightTokenizer({self.spec.describe()}, tokens={self.num_tokens}x{self.chunk_size}, "
                f"per_neuron={self.per_neuron}, neuron_centric={self.neuron_centric}, fitted={self.fitted})")


def canonicalize(ws: WeightSpace, reference: WeightSpace | None = None, iterations: int = 2,
                 max_iter: int = 30, seed: int = 0) -> tuple[WeightSpace, WeightSpace]:
    """Permute every network of ``ws`` onto one reference (Git Re-Basin weight matching).

    Without ``reference``, start from the first network and refine it ``iterations``
    times as the mean of the aligned zoo (an aligned average is a smoother target than
    any single member). Functions are unchanged (permutations only).

    Returns:
        ``(aligned ws, reference)``; keep the reference to canonicalize new networks.
    """
    from wspace.align import align

    from wspace.audit.baselines import aligned_average

    g = torch.Generator().manual_seed(seed)
    ref = reference
    if ref is None:  # the aligned average after iterations - 1 rounds; the first network for one round
        ref = (aligned_average(ws, iterations=iterations - 1, generator=g, max_iter=max_iter) if iterations > 1
               else ws[0].detach().clone())
    return align(ws, ref, max_iter=max_iter, generator=g), ref
