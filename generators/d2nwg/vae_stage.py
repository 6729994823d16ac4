"""Stage 1 of D2NWG training: the token VAE as a LightningModule, with a behaviour loss.

The loss is the VAE's structure loss (masked MSE of the standardized tokens + KL) plus,
when ``behaviour_weight > 0``, a *behaviour* loss: the reconstructed networks and the
originals are run on a fixed query set (inputs of the zoo's tasks, or an INR's
coordinate grid) and their outputs compared, MSE divided by the variance of the
originals' outputs (Meynent et al., 2025: structure alone lets small weight errors
that matter to the function through). Per-tensor standardization is kept: the decoded
tokens are de-standardized with the tokenizer's statistics before running.
"""
from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch

from wspace.functional import forward

from ..autoencoders import TokenVAE
from ..fitting import cosine_schedule
from ..tokenizer import WeightTokenizer

__all__ = ["VAEStage", "behaviour_loss"]


def behaviour_loss(tokenizer: WeightTokenizer, recon: torch.Tensor, tokens: torch.Tensor, query: torch.Tensor
                   ) -> torch.Tensor:
    """Output MSE of the networks of ``recon`` vs ``tokens`` (standardized ``[B, T, C]``) on
    ``query`` ``[N, *input]``, relative to the variance of the originals' outputs."""
    mask = tokenizer.mask.to(recon.device)
    spec = tokenizer.spec
    with torch.no_grad():
        target = forward(spec, tokenizer.detokenize(tokens * mask).tensors, query)
    pred = forward(spec, tokenizer.detokenize(recon * mask).tensors, query)
    return ((pred - target) ** 2).mean() / target.var().clamp_min(1e-8)


class VAEStage(L.LightningModule):
    """Trains ``vae`` on standardized tokens (padding masked out by the tokenizer's mask).

    ``config``: the ``vae`` settings (``kl_weight``, ``lr``, ``steps``, ``behaviour_weight``,
    ``behaviour_start``: the fraction of ``steps`` trained on structure alone first);
    ``query``: ``[N, *input]`` inputs for the behaviour loss (None: structure only).
    """

    def __init__(self, vae: TokenVAE, tokenizer: WeightTokenizer, config: Mapping[str, Any],
                 query: torch.Tensor | None = None):
        super().__init__()
        self.vae = vae
        self.tokenizer = tokenizer
        self.config = dict(config)
        self.weight = float(self.config.get("behaviour_weight", 0.0)) if query is not None else 0.0
        # the behaviour loss joins after this many steps: early on it fights the structure loss
        # (on CNNs it makes the decoder shrink weights rather than reproduce them)
        self.behaviour_from = int(float(self.config.get("behaviour_start", 0.0)) * int(self.config["steps"]))
        self.register_buffer("mask", tokenizer.mask.clone(), persistent=False)
        self.register_buffer("query", query.clone() if query is not None else torch.zeros(0), persistent=False)

    def training_step(self, batch: tuple[torch.Tensor, ...], _: int) -> torch.Tensor:
        tokens = batch[0]
        loss, parts = self.vae(tokens, self.mask, self.config["kl_weight"])
        logs = {"train/loss": loss, "train/mse": parts["mse"], "train/kl": parts["kl"]}
        if self.weight > 0 and self.global_step >= self.behaviour_from:
            b = behaviour_loss(self.tokenizer, parts["recon"], tokens, self.query)
            loss = loss + self.weight * b
            logs.update({"train/loss": loss, "train/behaviour": b.detach()})
        self.log_dict(logs, prog_bar=True, on_step=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.vae.parameters(), lr=self.config["lr"], weight_decay=0.0)
        return {"optimizer": opt, "lr_scheduler": cosine_schedule(opt, self.config["steps"], 50)}
