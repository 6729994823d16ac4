"""Weight autoencoders: a KL-VAE over weight tokens (stage 1 of latent weight diffusion).

:class:`TokenVAE` maps standardized tokens ``[B, T, C]`` to latent tokens ``[B, T, L]``
(one latent per weight token) with a small transformer on each side. Training follows
p-diff's recipe: a little Gaussian noise on the input tokens (``input_noise``) and on
the sampled latent (``latent_noise``) make the decoder robust to the imprecise latents
a diffusion model produces; the KL term (weight ``kl_weight``) keeps the latent scale
tame. The reconstruction loss is a masked MSE: padded token positions never count.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["TokenVAE", "masked_mse", "kl_divergence"]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions where ``mask`` ([T, C] or [B, T, C]) is True."""
    m = mask.to(pred.dtype).expand_as(pred)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean per latent value of KL(N(mu, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def _encoder(d_model: int, depth: int, heads: int, dropout: float) -> nn.Module:
    if depth == 0:
        return nn.Identity()
    layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class TokenVAE(nn.Module):
    """KL autoencoder over a fixed token grid ``[T, C]`` with latents ``[T, latent_dim]``.

    Args:
        num_tokens, chunk_size: the tokenizer's grid.
        latent_dim: latent values per token.
        d_model, depth, heads: width, transformer layers per side, attention heads.
        input_noise, latent_noise: std of the training-time noise augmentations.
        positions: ``[T]`` position index of every token (default: ``arange(T)``). Tokens
            that share an index share a position embedding: pass the tokenizer's
            ``role_index`` for a VAE that commutes with hidden-neuron permutations.
    """

    def __init__(self, num_tokens: int, chunk_size: int, latent_dim: int = 16, d_model: int = 128, depth: int = 2,
                 heads: int = 4, dropout: float = 0.0, input_noise: float = 1e-3, latent_noise: float = 0.1,
                 positions: torch.Tensor | None = None):
        super().__init__()
        pos = torch.arange(num_tokens) if positions is None else positions.long().clone()
        self.register_buffer("positions", pos, persistent=False)
        n_pos = int(pos.max()) + 1
        self.config = dict(num_tokens=num_tokens, chunk_size=chunk_size, latent_dim=latent_dim, d_model=d_model,
                           depth=depth, heads=heads, dropout=dropout, input_noise=input_noise,
                           latent_noise=latent_noise)
        self.input_noise, self.latent_noise = input_noise, latent_noise
        self.enc_in = nn.Linear(chunk_size, d_model)
        self.enc_pos = nn.Parameter(torch.randn(n_pos, d_model) * 0.02)
        self.encoder = _encoder(d_model, depth, heads, dropout)
        self.enc_norm = nn.LayerNorm(d_model)
        self.to_moments = nn.Linear(d_model, 2 * latent_dim)
        self.dec_in = nn.Linear(latent_dim, d_model)
        self.dec_pos = nn.Parameter(torch.randn(n_pos, d_model) * 0.02)
        self.decoder = _encoder(d_model, depth, heads, dropout)
        self.dec_norm = nn.LayerNorm(d_model)
        self.dec_out = nn.Linear(d_model, chunk_size)

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, C]`` -> (mu, logvar), each ``[B, T, latent_dim]``."""
        h = self.encoder(self.enc_in(tokens) + self.enc_pos[self.positions])
        mu, logvar = self.to_moments(self.enc_norm(h)).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, T, latent_dim]`` -> tokens ``[B, T, C]`` (padding positions are meaningless)."""
        h = self.decoder(self.dec_in(z) + self.dec_pos[self.positions])
        return self.dec_out(self.dec_norm(h))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, kl_weight: float = 1e-6
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss (masked MSE + ``kl_weight`` * KL) with noise augmentation; the parts
        hold the detached ``mse`` and ``kl`` and the reconstruction ``recon`` (with its graph,
        for losses on the decoded networks such as the behaviour loss)."""
        x = tokens * mask  # whatever sits in the padding never reaches the encoder
        if self.training and self.input_noise > 0:
            x = x + self.input_noise * torch.randn_like(x) * mask
        mu, logvar = self.encode(x)
        z = mu
        if self.training:
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            if self.latent_noise > 0:
                z = z + self.latent_noise * torch.randn_like(z)
        rec = self.decode(z)
        mse = masked_mse(rec, tokens, mask)
        kl = kl_divergence(mu, logvar)
        return mse + kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach(), "recon": rec}
