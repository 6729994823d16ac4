"""Stage 1 of D2NWG training: the token VAE as a LightningModule."""
from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch

from ..autoencoders import TokenVAE
from ..fitting import cosine_schedule

__all__ = ["VAEStage"]


class VAEStage(L.LightningModule):
    """Trains ``vae`` on standardized tokens (padding masked out by ``mask`` ``[T, C]``).

    ``config``: the ``vae`` settings (``kl_weight``, ``lr``, ``steps``).
    """

    def __init__(self, vae: TokenVAE, mask: torch.Tensor, config: Mapping[str, Any]):
        super().__init__()
        self.vae = vae
        self.config = dict(config)
        self.register_buffer("mask", mask, persistent=False)

    def training_step(self, batch: tuple[torch.Tensor, ...], _: int) -> torch.Tensor:
        loss, parts = self.vae(batch[0], self.mask, self.config["kl_weight"])
        self.log_dict({"train/loss": loss, "train/mse": parts["mse"], "train/kl": parts["kl"]},
                      prog_bar=True, on_step=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.vae.parameters(), lr=self.config["lr"], weight_decay=0.0)
        return {"optimizer": opt, "lr_scheduler": cosine_schedule(opt, self.config["steps"], 50)}
