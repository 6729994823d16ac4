"""Readout probe: data-aware condition features for neuron-centric weight tokens, at any depth.

A classifier's output row ``i`` is a function of the last hidden features *and* of class
``i``'s data: which feature fires on class ``i``. A denoiser that only sees a set
embedding of the shots has to discover this bilinear dependence (hidden weights x class
data) from scratch, which it does not in a CPU budget. The probe hands it over directly:
at every denoising step the current estimate of the latents is decoded, the network is
run on the condition's shots (one vectorized pass over all networks, :func:`layer_responses`),
and every hidden neuron's token receives

* for neurons of the **last hidden layer** (the features the linear output layer reads:
  after the activation of an MLP, after global pooling of a CNN): the ridge-regression
  readout of that neuron for every class (``K`` values, class order; the output-bias
  token receives the ridge bias);
* for every hidden neuron (conv channels averaged over positions): its mean response per
  class, centred over the classes (``K`` values), and its mean response over all shots
  (1 value). Earlier layers' responses are divided by the layer's RMS response, so a
  deep layer's scale does not swamp the features; the last hidden layer keeps raw values.

Tokens of earlier layers carry zeros in the ridge slots. The features are a
deterministic function of (noisy sample, condition); classifier-free guidance drops them
together with the condition.

Supported (:func:`probe_supported`): neuron-centric tokenizers of feed-forward networks
(MLPs, CNNs with global pooling before a linear head; no residual blocks) whose hidden
layers are each followed by a known activation. :func:`fit_readout` is the same ridge
step applied once to finished networks (a *fitting* step on the support set, reported
separately from generation by the benchmarks).
"""
from __future__ import annotations

from typing import Callable

import torch

from wspace.errors import WeightSpaceError
from wspace.functional import Activations, apply_activation, run_ops
from wspace.space import WeightSpace
from wspace.spec import Op, WeightSpaceSpec

from .tokenizer import WeightTokenizer

__all__ = ["ReadoutProbe", "probe_supported", "readout_features", "ridge_features", "layer_responses",
           "fit_readout", "probe_spec_supported"]

ACTIVATIONS_SUPPORTED = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "elu", "softplus", "sine")


def probe_spec_supported(spec: WeightSpaceSpec) -> bool:
    """A flat program (no residual / nested blocks) of linear/conv layers, each hidden one
    followed by a known activation, ending in a linear layer that reads the previous
    layer's units directly."""
    ops = list(spec.program)
    if not ops or ops[-1].kind != "linear" or any(o.kind in ("residual", "sequential") for o in ops):
        return False
    last, prev = (spec.layers[-1], spec.layers[-2]) if len(spec.layers) >= 2 else (None, None)
    if last is None or last.in_group is None or last.in_group != prev.out_group \
            or last.in_features != prev.out_features:
        return False
    acts = [dict(o.attrs).get("name") for o in ops if o.kind == "act"]
    return len(acts) >= len(spec.layers) - 1 and all(a in ACTIVATIONS_SUPPORTED for a in acts)


def probe_supported(tokenizer: WeightTokenizer) -> bool:
    """Neuron-centric tokens of a network :func:`probe_spec_supported` accepts."""
    return bool(tokenizer.neuron_centric) and probe_spec_supported(tokenizer.spec)


def _hidden_ops(spec: WeightSpaceSpec) -> list[tuple[Op, int | None]]:
    """The program's ops, each with the index of the hidden layer whose response is read
    right after it (its activation), else None."""
    layer_of_weight = {layer.weight: i for i, layer in enumerate(spec.layers)}
    out, current = [], None
    for op in spec.program:
        if op.kind in ("linear", "conv"):
            current = layer_of_weight[op.params[0]]
            out.append((op, None))
        elif op.kind == "act" and current is not None:
            out.append((op, current))
            current = None
        else:
            out.append((op, None))
    return out


def layer_responses(ws: WeightSpace, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Hidden responses of ``B`` networks on per-network inputs ``x`` ``[B, N, *input]``.

    Returns ``(responses, features)``: ``responses[l]`` ``[B, N, C_l]`` is hidden layer
    ``l``'s post-activation output (conv channels averaged over positions), and
    ``features`` ``[B, N, H]`` is what the last (linear) layer reads.
    """
    spec = ws.spec
    if not probe_spec_supported(spec):
        raise WeightSpaceError(f"the readout probe needs a feed-forward network ending in a linear layer on "
                               f"the previous layer's units; got {spec.describe()}")
    st = Activations(x.to(ws.tensors[0].dtype), shared=False, B=ws.batch_size)
    responses: list[torch.Tensor] = [None] * (len(spec.layers) - 1)  # type: ignore[list-item]
    ops = _hidden_ops(spec)
    for op, layer in ops[:-1]:  # everything but the output layer
        run_ops((op,), ws.tensors, st)
        if layer is not None:
            h = st.to("bnc")
            responses[layer] = h.flatten(3).mean(-1) if h.dim() > 3 else h
    feats = st.to("bnc")
    return responses, feats.flatten(2)


def ridge_features(h: torch.Tensor, K: int, S: int, ridge: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge readout of features ``h`` ``[B, K*S, H]`` (samples in class order, ``S`` per
    class) onto ``2 * onehot - 1`` targets: per-feature rows ``[B, H, K]`` and the bias ``[B, K]``."""
    B, N, H = h.shape
    h1 = torch.cat([h, torch.ones_like(h[..., :1])], -1)
    y = 2.0 * torch.eye(K, dtype=h.dtype, device=h.device).repeat_interleave(S, 0) - 1.0  # [N, K]
    gram = h1.transpose(1, 2) @ h1 + ridge * torch.eye(H + 1, dtype=h.dtype, device=h.device)
    sol = torch.linalg.solve(gram, h1.transpose(1, 2) @ y)  # [B, H+1, K]
    return sol[:, :H], sol[:, H]


def _class_means(h: torch.Tensor, K: int, S: int) -> torch.Tensor:
    """``[B, C, K+1]``: per-class mean response centred over classes, then the overall mean."""
    B, N, C = h.shape
    means = h.view(B, K, S, C).mean(2)  # [B, K, C]
    centred = means - means.mean(1, keepdim=True)
    return torch.cat([centred.transpose(1, 2), means.mean(1)[..., None]], -1)


def readout_features(w1: torch.Tensor, b1: torch.Tensor, shots: torch.Tensor, act: str = "relu",
                     ridge: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hidden-layer features ``[B, H, 2K+1]`` (ridge row, centred class means, mean) and
    the ridge output bias ``[B, K]``; ``w1`` ``[B, H, D]``, ``b1`` ``[B, H]``, ``shots``
    ``[B, K, S, D]`` (class order)."""
    B, K, S = shots.shape[:3]
    x = shots.reshape(B, K * S, -1).to(w1.dtype)
    h = apply_activation(act, {}, torch.einsum("bnd,bhd->bnh", x, w1) + b1[:, None, :])  # [B, N, H]
    rows, bias = ridge_features(h, K, S, ridge)
    return torch.cat([rows, _class_means(h, K, S)], -1), bias


def fit_readout(ws: WeightSpace, shots: torch.Tensor, ridge: float = 1.0) -> WeightSpace:
    """``ws`` with its output layer replaced by the ridge readout of its last hidden features
    on ``shots`` ``[B, K, S, *input]`` (class order; one support set per network).

    A fitting step on the task's support set: benchmarks report it separately (the same
    step on random hidden layers is a strong baseline on small tasks).
    """
    B, K, S = shots.shape[:3]
    if shots.shape[0] != ws.batch_size:
        raise WeightSpaceError(f"fit_readout: {shots.shape[0]} support sets for {ws.batch_size} networks")
    spec = ws.spec
    if K != spec.out_features:
        raise WeightSpaceError(f"fit_readout: the support set has {K} classes, the networks {spec.out_features} "
                               f"outputs")
    with torch.no_grad():
        x = shots.reshape(B, K * S, *shots.shape[3:]).to(ws.tensors[0].dtype)
        _, feats = layer_responses(ws, x)
        rows, bias = ridge_features(feats.double(), K, S, ridge)
    last = spec.layers[-1]
    tensors = list(ws.tensors)
    tensors[last.weight] = rows.transpose(1, 2).to(tensors[last.weight].dtype).contiguous()
    if last.bias is not None:
        tensors[last.bias] = bias.to(tensors[last.bias].dtype).contiguous()
    return WeightSpace(spec, tensors)


class ReadoutProbe:
    """Callable ``(scaled latents [B, T, L], shots [B, K, S, *input]) -> features [B, T, 2K+1]``.

    ``decode`` maps scaled latents to standardized tokens (the frozen VAE decoder); the
    tokenizer turns them into networks, which run on the shots (see the module docstring).
    """

    def __init__(self, tokenizer: WeightTokenizer, decode: Callable[[torch.Tensor], torch.Tensor],
                 ridge: float = 1.0):
        if not probe_supported(tokenizer):
            raise WeightSpaceError(f"the readout probe needs neuron-centric tokens of a feed-forward network "
                                   f"ending in a linear layer; got {tokenizer!r}")
        self.tokenizer, self.decode, self.ridge = tokenizer, decode, float(ridge)
        spec = tokenizer.spec
        lay = tokenizer.layout
        self.K = spec.out_features
        self.n_hidden = len(spec.layers) - 1
        # token -> (hidden layer, neuron); the output-bias token(s) get the ridge bias
        self.layer_tokens = [torch.nonzero(lay.layer_index == li).flatten() for li in range(self.n_hidden)]
        self.layer_neurons = [lay.neuron_index[t] for t in self.layer_tokens]
        self.bias_tokens = torch.nonzero(lay.layer_index == self.n_hidden).flatten()
        for li, n in enumerate(self.layer_neurons):
            if bool((n < 0).any()):
                raise WeightSpaceError(f"the readout probe needs per-neuron tokens; layer {li} has tokens that "
                                       f"span several neurons ({tokenizer!r})")

    @property
    def dim(self) -> int:
        return 2 * self.K + 1

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, shots: torch.Tensor) -> torch.Tensor:
        tokens = self.decode(latents)
        ws = self.tokenizer.detokenize(tokens * self.tokenizer.mask.to(tokens.device))
        B, K, S = shots.shape[:3]
        x = shots.reshape(B, K * S, *shots.shape[3:]).float()
        responses, feats = layer_responses(ws.map(lambda t: t.float()), x)
        T = latents.shape[1]
        out = torch.zeros(B, T, self.dim, device=latents.device)
        last = self.n_hidden - 1
        for li in range(self.n_hidden):  # a few layers per network, not neurons
            h = feats if li == last else responses[li]
            per_neuron = _class_means(h, K, S)  # [B, C, K+1]
            if li == last:
                rows, bias = ridge_features(h, K, S, self.ridge)
                per_neuron = torch.cat([rows, per_neuron], -1)
            else:  # scale-free responses of earlier layers
                rms = h.square().mean((1, 2), keepdim=True).sqrt().clamp_min(1e-6)
                per_neuron = torch.cat([per_neuron.new_zeros(B, h.shape[-1], K), per_neuron / rms.transpose(1, 2)],
                                       -1)
            tok = self.layer_tokens[li].to(out.device)
            out[:, tok] = per_neuron[:, self.layer_neurons[li].to(out.device)]
        if len(self.bias_tokens):
            out[:, self.bias_tokens.to(out.device), : self.K] = bias[:, None]
        # bounded features: a badly conditioned early estimate must not blow up the denoiser
        return out.clamp(-10.0, 10.0)
