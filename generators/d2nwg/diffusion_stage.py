"""Stage 2 of D2NWG training: latent diffusion of the denoiser as a LightningModule.

DDPM noise from diffusers' ``DDPMScheduler``, condition dropout for classifier-free
guidance, diffusers' ``EMAModel`` of the weights (saved in Lightning checkpoints; the EMA is
what the pipeline samples with).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning as L
import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from ..conditioning import ShotSampler
from ..denoisers import TokenDenoiser
from ..fitting import cosine_schedule

__all__ = ["DiffusionStage"]


class DiffusionStage(L.LightningModule):
    """Trains ``denoiser`` on batches ``(scaled latents [B, T, L], task ids [B])``.

    ``config``: the ``denoiser`` settings (``cond_drop``, ``lr``, ``steps``, ``warmup``,
    ``ema_decay``); ``condition``: the ``condition`` settings (``shots``); ``scheduler``: the
    DDPM settings; ``shots``: the tasks' shot sampler (None: unconditional); ``probe``: the
    readout probe (or None), called on the shrinkage estimate
    ``sqrt(abar) z_t`` as at sampling time.
    """

    def __init__(self, denoiser: TokenDenoiser, shots: ShotSampler | None, config: Mapping[str, Any],
                 condition: Mapping[str, Any], scheduler: Mapping[str, Any], seed: int,
                 probe: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.shots = shots
        self.config, self.condition = dict(config), dict(condition)
        self.probe = probe
        self.sched = DDPMScheduler(**scheduler, clip_sample=False)
        self.ema = EMAModel(self.denoiser.parameters(), decay=self.config["ema_decay"], use_ema_warmup=True,
                            power=0.75)
        self.gen = torch.Generator().manual_seed(seed + 17)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        z, tid = batch
        B = z.shape[0]
        x = cond = None
        if self.shots is not None:  # conditional: this step's shots of every network's task
            x = self.shots.draw(tid.cpu(), self.condition["shots"], self.gen).to(z.device)
            cond = self.denoiser.condition_tokens(x)
        drop = torch.rand(B, device=z.device) < self.config["cond_drop"]
        noise = torch.randn_like(z)
        t = torch.randint(0, self.sched.config.num_train_timesteps, (B,), device=z.device)
        zt = self.sched.add_noise(z, noise, t)
        pr = None
        if self.probe is not None and x is not None:  # as at sampling time: probe the shrinkage estimate sqrt(abar) z_t
            ab = self.sched.alphas_cumprod.to(z.device)[t].sqrt()[:, None, None]
            pr = self.probe(zt * ab, x)
        kind = self.sched.config.prediction_type
        target = noise if kind == "epsilon" else self.sched.get_velocity(z, noise, t) if kind == "v_prediction" else z
        loss = torch.nn.functional.mse_loss(self.denoiser(zt, t, cond, drop, pr), target)
        self.log("train/loss", loss, prog_bar=True, on_step=True)
        return loss

    def on_train_batch_end(self, *args: Any) -> None:
        self.ema.step(self.denoiser.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.denoiser.parameters(), lr=self.config["lr"], weight_decay=0.0)
        return {"optimizer": opt, "lr_scheduler": cosine_schedule(opt, self.config["steps"], self.config["warmup"])}
