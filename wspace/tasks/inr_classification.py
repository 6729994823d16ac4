"""INR classification: the class of the image an INR encodes, from its weights."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from wspace.spec import WeightSpaceSpec

from wspace.nn import build_encoder

from .base import WeightSpaceTask, as_spec, resolve_encoder

__all__ = ["InrClassification"]


class InrClassification(WeightSpaceTask):
    """``encoder(ws) -> logits [B, num_classes]``, cross-entropy; logs ``{train,val,test}/loss``
    and ``/acc`` (val / test over the whole split).

    Args:
        spec: the INR architecture (or its JSON).
        num_classes: classes of the encoded images.
        encoder: the encoder config (``{"_target_": "wspace.nn.UNF", **options}``) or the name of a
            ``configs/train/encoder`` option; built with ``wspace.nn.build_encoder(config, spec, num_classes)``
            and saved in the hyperparameters as the resolved config.
        encoder_kwargs: options merged into the encoder config.
        lr / weight_decay / scheduler: AdamW, ``"cosine"`` decay over the run or ``None``.
        label_smoothing: of the cross-entropy.
    """

    prog_bar_metrics = ("acc",)

    def __init__(self, spec: WeightSpaceSpec | str, num_classes: int, encoder: str | Mapping[str, Any] = "unf",
                 encoder_kwargs: Mapping[str, Any] | None = None, lr: float = 1e-3, weight_decay: float = 0.0,
                 scheduler: str | None = "cosine", label_smoothing: float = 0.0):
        super().__init__()
        self._save(locals(), encoder=resolve_encoder(encoder, encoder_kwargs), encoder_kwargs=None)
        self.encoder = build_encoder(self.hparams.encoder, as_spec(spec), int(num_classes))

    @classmethod
    def from_datamodule(cls, dm: Any, **kwargs: Any) -> "InrClassification":
        return cls(dm.spec, dm.num_classes, **kwargs)

    def forward(self, ws: Any) -> torch.Tensor:
        return self.encoder(ws)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ws, y = batch
        logits = self(ws)
        loss = F.cross_entropy(logits, y, label_smoothing=float(self.hparams.label_smoothing))
        hard = y.argmax(-1) if y.is_floating_point() else y  # Mixup collates give soft labels [B, C]
        acc = (logits.argmax(-1) == hard).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        self.log("train/acc", acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    # val / test: exact split-level sums (independent of batch sizes)
    def _eval_step(self, stage: str, batch: Any) -> None:
        ws, y = batch
        logits = self(ws)
        s = self._eval.setdefault(stage, [0.0, 0.0, 0.0])
        s[0] += float(F.cross_entropy(logits, y, reduction="sum"))
        s[1] += float((logits.argmax(-1) == y).sum())
        s[2] += len(y)

    def _eval_end(self, stage: str) -> None:
        loss, correct, n = self._eval.pop(stage, [0.0, 0.0, 0.0])
        if n:
            self._log_epoch(stage, {"loss": loss / n, "acc": correct / n})
