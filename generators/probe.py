"""Readout probe: data-aware condition features for neuron-centric weight tokens.

A classifier's output row ``i`` is a function of the hidden features *and* of class
``i``'s data: which hidden neuron fires on class ``i``. A denoiser that only sees a set
embedding of the shots has to discover this bilinear dependence (hidden weights x class
data) from scratch, which it does not in a CPU budget. The probe hands it over directly:
at every denoising step the current estimate of the latents is decoded, the hidden
layer is run on the condition's shots, and each hidden neuron's token receives

* the ridge-regression readout of that neuron for every class (``K`` values, class
  order; the output-bias token receives the ridge bias),
* its mean activation per class, centred over the classes (``K`` values),
* its mean activation over all shots (1 value).

The features are a deterministic function of (noisy sample, condition); classifier-free
guidance drops them together with the condition. Supported: neuron-centric tokenizers of
networks with one hidden layer on flat inputs (``linear -> activation -> linear``);
:func:`probe_supported` says whether a spec qualifies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from wspace.errors import WeightSpaceError

from .tokenizer import WeightTokenizer

__all__ = ["ReadoutProbe", "probe_supported", "readout_features"]

_ACTS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu, "silu": F.silu,
         "elu": F.elu, "leaky_relu": F.leaky_relu}


def _activation(spec) -> str | None:
    ops = [o for o in spec.walk()]
    kinds = [o.kind for o in ops]
    if kinds != ["linear", "act", "linear"]:
        return None
    return dict(ops[1].attrs).get("name")


def probe_supported(tokenizer: WeightTokenizer) -> bool:
    """Neuron-centric tokens of a ``linear -> act -> linear`` network with a known activation."""
    if not (tokenizer.neuron_centric and _activation(tokenizer.spec) in _ACTS):
        return False
    hidden = int((tokenizer.layout.layer_index == 0).sum())
    return hidden == tokenizer.spec.layers[0].out_features  # one token per hidden neuron


def readout_features(w1: torch.Tensor, b1: torch.Tensor, shots: torch.Tensor, act: str = "relu",
                     ridge: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron features ``[B, H, 2K+1]`` and the ridge output bias ``[B, K]``.

    ``w1`` ``[B, H, D]``, ``b1`` ``[B, H]``, ``shots`` ``[B, K, S, D]`` (class order).
    """
    B, K, S = shots.shape[:3]
    x = shots.reshape(B, K * S, -1).to(w1.dtype)
    h = _ACTS[act](torch.einsum("bnd,bhd->bnh", x, w1) + b1[:, None, :])  # [B, N, H]
    H = h.shape[-1]
    h1 = torch.cat([h, torch.ones_like(h[..., :1])], -1)
    y = 2.0 * torch.eye(K, dtype=h.dtype, device=h.device).repeat_interleave(S, 0) - 1.0  # [N, K]
    gram = h1.transpose(1, 2) @ h1 + ridge * torch.eye(H + 1, dtype=h.dtype, device=h.device)
    sol = torch.linalg.solve(gram, h1.transpose(1, 2) @ y)  # [B, H+1, K]
    means = h.view(B, K, S, H).mean(2)  # [B, K, H]
    centred = means - means.mean(1, keepdim=True)
    feats = torch.cat([sol[:, :H], centred.transpose(1, 2), means.mean(1)[..., None]], -1)
    return feats, sol[:, H]


class ReadoutProbe:
    """Callable ``(scaled latents [B, T, L], shots [B, K, S, *input]) -> features [B, T, 2K+1]``.

    Decodes the latents with the (frozen) VAE decoder and the tokenizer's statistics.
    """

    def __init__(self, tokenizer: WeightTokenizer, decode, ridge: float = 1.0):
        if not probe_supported(tokenizer):
            raise WeightSpaceError(f"the readout probe needs neuron-centric tokens of a linear -> activation -> "
                                   f"linear network; got {tokenizer!r}")
        self.tokenizer, self.decode, self.ridge = tokenizer, decode, float(ridge)
        self.act = _activation(tokenizer.spec)
        lay = tokenizer.layout
        self.K = tokenizer.spec.out_features
        self.hidden_tokens = torch.nonzero(lay.layer_index == 0).flatten()
        self.hidden_neurons = lay.neuron_index[self.hidden_tokens]
        self.bias_tokens = torch.nonzero(lay.layer_index == len(tokenizer.spec.layers) - 1).flatten()

    @property
    def dim(self) -> int:
        return 2 * self.K + 1

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, shots: torch.Tensor) -> torch.Tensor:
        tokens = self.decode(latents)
        ws = self.tokenizer.detokenize(tokens * self.tokenizer.mask.to(tokens.device))
        w1, b1 = ws.tensors[0], ws.tensors[1]
        feats, bias = readout_features(w1.float(), b1.float(), shots.float(), self.act, self.ridge)
        B, T = latents.shape[0], latents.shape[1]
        out = torch.zeros(B, T, self.dim, device=latents.device)
        out[:, self.hidden_tokens.to(out.device)] = feats[:, self.hidden_neurons.to(out.device)]
        if len(self.bias_tokens):
            out[:, self.bias_tokens.to(out.device), : self.K] = bias[:, None]
        # bounded features: a badly conditioned early estimate must not blow up the denoiser
        return out.clamp(-10.0, 10.0)
