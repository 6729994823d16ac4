"""Generalization prediction: a classifier's test accuracy from its weights (Kendall tau, R^2)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from wspace.spec import WeightSpaceSpec

from wspace.nn import build_encoder

from .base import WeightSpaceTask, as_spec, resolve_encoder
from .metrics import kendall_tau, r2_score

__all__ = ["GeneralizationPrediction"]


class GeneralizationPrediction(WeightSpaceTask):
    """Regression of a scalar target (default ``test_acc``): ``encoder(ws) -> [B, 1]``.

    The model predicts the *standardized* target (``(y - target_mean) / target_std``, train
    statistics); the loss is its MSE. Logged per split: ``loss`` (standardized MSE),
    ``mse`` (in target units), ``kendall_tau`` and ``r2``, over the whole val / test split.

    Args:
        spec: the classifiers' architecture (or its JSON).
        target_mean / target_std: standardization of the target (see ``ZooDataModule.target_stats``).
        encoder / encoder_kwargs / lr / weight_decay / scheduler: as :class:`InrClassification`.
    """

    prog_bar_metrics = ("kendall_tau",)

    def __init__(self, spec: WeightSpaceSpec | str, target_mean: float = 0.0, target_std: float = 1.0,
                 encoder: str | Mapping[str, Any] = "unf", encoder_kwargs: Mapping[str, Any] | None = None,
                 lr: float = 1e-3,                 weight_decay: float = 0.0, scheduler: str | None = "cosine"):
        super().__init__()
        self._save(locals(), encoder=resolve_encoder(encoder, encoder_kwargs), encoder_kwargs=None)
        self.encoder = build_encoder(self.hparams.encoder, as_spec(spec), 1)

    @classmethod
    def from_datamodule(cls, dm: Any, **kwargs: Any) -> "GeneralizationPrediction":
        mean, std = dm.target_stats()
        return cls(dm.spec, mean, std, **kwargs)

    def forward(self, ws: Any) -> torch.Tensor:
        """Predicted target values ``[B]`` (in target units)."""
        return self.encoder(ws).squeeze(-1) * self.hparams.target_std + self.hparams.target_mean

    def _standardized(self, ws: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(ws).squeeze(-1)
        return z, (y.to(z.dtype) - self.hparams.target_mean) / self.hparams.target_std

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ws, y = batch
        z, t = self._standardized(ws, y)
        loss = F.mse_loss(z, t)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def _eval_step(self, stage: str, batch: Any) -> None:
        ws, y = batch
        self._eval.setdefault(stage, []).append((self(ws).detach().double().cpu(), y.detach().double().cpu()))

    def _eval_end(self, stage: str) -> None:
        parts = self._eval.pop(stage, [])
        if not parts:
            return
        pred = torch.cat([p for p, _ in parts])
        y = torch.cat([t for _, t in parts])
        mse = float(((pred - y) ** 2).mean())
        self._log_epoch(stage, {"loss": mse / self.hparams.target_std ** 2, "mse": mse,
                                "kendall_tau": kendall_tau(pred, y), "r2": r2_score(pred, y)})
