"""Denoisers for latent weight diffusion.

:class:`TokenDenoiser` is a transformer over the latent weight tokens ``[B, T, L]``
with in-context conditioning: the sequence is ``[T latent tokens | K condition tokens |
1 timestep token]``, and the timestep embedding is also added to every latent token.
Output-layer tokens of unit ``i`` get the same *slot* embedding as condition token
``i`` (output unit ``i`` is class ``i``), so matching a class to its output row is an
attention lookup rather than something to memorize per class.

Classifier-free guidance: :meth:`TokenDenoiser.forward` takes ``drop`` ``[B]`` (bool);
dropped rows see learned null condition tokens instead of the task's.
"""
from __future__ import annotations

import torch
from torch import nn

from .conditioning import SetEncoder, sinusoidal

__all__ = ["TokenDenoiser"]


class TokenDenoiser(nn.Module):
    """eps-prediction transformer over latent tokens, conditioned on a :class:`SetEncoder`.

    Args:
        num_tokens, latent_dim: the latent grid ``[T, L]``.
        slots: ``[T]`` long, output unit of each latent token of the last layer, ``-1``
            for every other token.
        set_encoder: the dataset encoder (its ``num_classes`` is K).
        d_model, depth, heads, dropout: transformer size.
    """

    def __init__(self, num_tokens: int, latent_dim: int, slots: torch.Tensor, set_encoder: SetEncoder,
                 d_model: int = 192, depth: int = 4, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        K = set_encoder.num_classes
        self.config = dict(num_tokens=num_tokens, latent_dim=latent_dim, d_model=d_model, depth=depth, heads=heads,
                           dropout=dropout)
        self.set_encoder = set_encoder
        self.inp = nn.Linear(latent_dim, d_model)
        self.pos = nn.Parameter(torch.randn(num_tokens, d_model) * 0.02)
        self.slot = nn.Parameter(torch.randn(K, d_model) * 0.02)
        self.register_buffer("slots", slots.long().clone(), persistent=False)
        self.cond_in = nn.Linear(set_encoder.rho.out_features, d_model)
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
        tokens, _ = self.set_encoder(shots)
        return self.cond_in(tokens)

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise of ``z`` ``[B, T, L]`` at timesteps ``t`` ``[B]`` given
        condition tokens ``cond`` ``[B, K, d]`` (from :meth:`condition_tokens`)."""
        B = z.shape[0]
        if drop is not None:
            cond = torch.where(drop[:, None, None], self.null.expand(B, -1, -1), cond)
        d = self.pos.shape[-1]
        temb = self.time(sinusoidal(t, d))  # [B, d]
        x = self.inp(z) + self.pos + self.slot_embedding() + self.kind[0] + temb[:, None]
        c = cond + self.slot + self.kind[1]
        h = torch.cat([x, c, (temb + self.kind[2])[:, None]], 1)
        h = self.norm(self.blocks(h))
        return self.out(h[:, : z.shape[1]])
