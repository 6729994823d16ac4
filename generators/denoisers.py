"""Denoisers for latent weight diffusion.

:class:`TokenDenoiser` is a transformer over the latent weight tokens ``[B, T, L]``
with in-context conditioning: the sequence is ``[T latent tokens | K condition tokens |
1 timestep token]``, and the timestep embedding is also added to every latent token.
Output-layer tokens of unit ``i`` get the same *slot* embedding as condition token
``i`` (output unit ``i`` is class ``i``), so matching a class to its output row is an
attention lookup rather than something to memorize per class.

Every latent token also receives a projection of the ``K`` class embeddings concatenated
in class order (so the values of a token that belong to output ``i`` can read class
``i``'s embedding without attention), and, optionally, per-token *probe* features
(:mod:`generators.probe`: how the current sample's hidden neurons respond to each
class's shots). Position embeddings are indexed by ``positions`` (the tokenizer's
``role_index`` makes the denoiser commute with hidden-neuron permutations).

Classifier-free guidance: :meth:`TokenDenoiser.forward` takes ``drop`` ``[B]`` (bool);
dropped rows see learned null condition tokens instead of the task's, and no probe.
Unconditional denoisers (``set_encoder=None``, e.g. for INR zoos) always see the null tokens.
"""
from __future__ import annotations

import torch
from torch import nn

from wspace.errors import WeightSpaceError

from .conditioning import SetEncoder, sinusoidal

__all__ = ["TokenDenoiser"]


class TokenDenoiser(nn.Module):
    """eps-prediction transformer over latent tokens, conditioned on a :class:`SetEncoder`.

    Args:
        num_tokens, latent_dim: the latent grid ``[T, L]``.
        slots: ``[T]`` long, output unit of each latent token of the last layer, ``-1``
            for every other token.
        set_encoder: the dataset encoder (its ``num_classes`` is K), or None for an
            unconditional denoiser (then ``num_classes`` gives K, the number of output units).
        d_model, depth, heads, dropout: transformer size.
        positions: ``[T]`` position-embedding index per token (default ``arange(T)``).
        probe_dim: size of the per-token probe features (0: none).
        alphas_cumprod: ``[num_train_timesteps]`` of the scheduler for the x0
            preconditioning of ``prediction_type="sample"``: the output is
            ``sqrt(abar) z_t + sqrt(1 - abar) F`` (the Gaussian posterior mean for unit-variance
            latents plus a learned correction, EDM-style), so the network only learns the
            residual. ``None``: the raw network output (epsilon / v targets).
    """

    def __init__(self, num_tokens: int, latent_dim: int, slots: torch.Tensor, set_encoder: SetEncoder | None,
                 d_model: int = 192, depth: int = 4, heads: int = 4, dropout: float = 0.0,
                 positions: torch.Tensor | None = None, probe_dim: int = 0,
                 alphas_cumprod: torch.Tensor | None = None, num_classes: int | None = None):
        super().__init__()
        K = set_encoder.num_classes if set_encoder is not None else int(num_classes or 1)
        self.num_classes = K
        self.config = dict(num_tokens=num_tokens, latent_dim=latent_dim, d_model=d_model, depth=depth, heads=heads,
                           dropout=dropout, probe_dim=probe_dim)
        self.set_encoder = set_encoder
        self.inp = nn.Linear(latent_dim, d_model)
        pos = torch.arange(num_tokens) if positions is None else positions.long().clone()
        self.register_buffer("positions", pos, persistent=False)
        self.pos = nn.Parameter(torch.randn(int(pos.max()) + 1, d_model) * 0.02)
        self.classes_in = nn.Linear(K * d_model, d_model)  # class embeddings, concatenated in class order
        self.probe_dim = int(probe_dim)
        self.probe_in = nn.Sequential(nn.Linear(probe_dim, d_model), nn.GELU(), nn.Linear(d_model, d_model)) \
            if probe_dim > 0 else None
        # direct linear route from the probe to the output: the head is nearly linear in it
        self.probe_out = nn.Linear(probe_dim, latent_dim) if probe_dim > 0 else None
        if alphas_cumprod is not None:
            self.register_buffer("abar", alphas_cumprod.float().clone(), persistent=False)
        else:
            self.abar = None
        self.slot = nn.Parameter(torch.randn(K, d_model) * 0.02)
        self.register_buffer("slots", slots.long().clone(), persistent=False)
        self.cond_in = nn.Linear(set_encoder.rho.out_features, d_model) if set_encoder is not None else None
        self.null = nn.Parameter(torch.randn(K, d_model) * 0.02)
        self.time = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.kind = nn.Parameter(torch.randn(3, d_model) * 0.02)  # latent / condition / time token
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def slot_embedding(self) -> torch.Tensor:
        """``[T, d]``: the slot embedding of each latent token (zero for non-output tokens)."""
        s = self.slots
        emb = self.slot[s.clamp_min(0)]
        return emb * (s >= 0).unsqueeze(-1).to(emb.dtype)

    def condition_tokens(self, shots: torch.Tensor) -> torch.Tensor:
        """``[B, K, S, *input]`` -> ``[B, K, d]`` condition tokens (before guidance dropout)."""
        if self.set_encoder is None:
            raise WeightSpaceError("this denoiser is unconditional: it takes no condition")
        tokens, _ = self.set_encoder(shots)
        return self.cond_in(tokens)

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                drop: torch.Tensor | None = None, probe: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the scheduler's target (noise, sample or velocity) of ``z`` ``[B, T, L]`` at
        timesteps ``t`` ``[B]`` given condition tokens ``cond`` ``[B, K, d]`` (from
        :meth:`condition_tokens`; None: the null condition) and, when the denoiser has a
        probe, ``probe`` ``[B, T, P]``."""
        B = z.shape[0]
        if cond is None:
            cond = self.null.expand(B, -1, -1)
        elif drop is not None:
            cond = torch.where(drop[:, None, None], self.null.expand(B, -1, -1), cond)
        d = self.pos.shape[-1]
        temb = self.time(sinusoidal(t, d))  # [B, d]
        x = self.inp(z) + self.pos[self.positions] + self.slot_embedding() + self.kind[0] + temb[:, None]
        x = x + self.classes_in(cond.reshape(B, -1))[:, None]
        if self.probe_in is not None:
            if probe is None:
                probe = z.new_zeros(B, z.shape[1], self.probe_dim)
            elif drop is not None:
                probe = probe * (~drop)[:, None, None].to(probe.dtype)
            x = x + self.probe_in(probe)
        c = cond + self.slot + self.kind[1]
        h = torch.cat([x, c, (temb + self.kind[2])[:, None]], 1)
        h = self.norm(self.blocks(h))
        out = self.out(h[:, : z.shape[1]])
        if self.probe_out is not None:
            out = out + self.probe_out(probe)
        if self.abar is not None:
            ab = self.abar.to(z.device)[t.long()][:, None, None]
            out = ab.sqrt() * z + (1.0 - ab).sqrt() * out
        return out
