"""INR editing: an equivariant network maps an INR's weights to those of its dilated image.

Target (no second zoo needed): render the input INR on its pixel grid, dilate the
render morphologically (``kernel x kernel`` max-pool, stride 1: ink grows by one pixel
for ``kernel=3``), and train the equivariant model so that the render of its *output*
weights matches it. Metric: that MSE (per pixel, in the INR's value range). The
identity baseline (the unedited INR's render vs the dilated render) is logged as
``identity_mse`` alongside.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

from wspace.nn import build_equivariant

from .base import WeightSpaceTask, as_spec, resolve_encoder

__all__ = ["InrEditing", "dilate", "inr_resolution"]


def dilate(images: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Grayscale morphological dilation of ``[B, C, H, W]`` images (max over a ``kernel`` square)."""
    if kernel < 1 or kernel % 2 == 0:
        raise WeightSpaceError(f"dilation kernel must be a positive odd integer, got {kernel}")
    return F.max_pool2d(images, kernel, stride=1, padding=kernel // 2)


def inr_resolution(zoo: Any) -> int:
    """Side of the pixel grid the INRs of ``zoo`` were fit on (from the zoo's INR task)."""
    names = sorted({str(r.get("task")) for r in zoo.records})
    tasks = zoo.tasks
    for name in names:
        t = tasks.get(name) or {}
        if t.get("kind") == "inr" and t.get("resolution"):
            return int(t["resolution"])
    for name in names:  # zoos without task metadata: a name such as "digits-inr@16"
        m = re.fullmatch(r".*-inr@(\d+)", name)
        if m:
            return int(m.group(1))
    raise WeightSpaceError(f"inr_editing needs a zoo of image INRs (its records' tasks {names} are not INR tasks)",
                           file=zoo.path)


class InrEditing(WeightSpaceTask):
    """Equivariant ``WeightSpace -> WeightSpace`` editing, trained through the renders.

    Args:
        spec: the INR architecture (2-d coordinates in).
        weight_mean / weight_std: per-tensor normalization of the input weights (the
            data module's train stats); the model works in normalized space and its output
            is denormalized before rendering.
        resolution: side of the (row, col) pixel grid in [-1, 1]^2 the INRs are rendered on.
        encoder / encoder_kwargs: the encoder config or option name, as :class:`InrClassification`;
            its weight -> weight version is built (:func:`wspace.nn.build_equivariant`: the
            class's ``equivariant`` counterpart, without its ``invariant_only_options``, listed
            in ``dropped_kwargs``).
        residual / residual_init: output ``ws + gamma * f(ws)`` (editing parametrization).
        kernel: dilation kernel size.
        lr / weight_decay / scheduler: as the other tasks.
    """

    prog_bar_metrics = ("mse",)

    def __init__(self, spec: WeightSpaceSpec | str, weight_mean: Sequence[float], weight_std: Sequence[float],
                 resolution: int, encoder: str | Mapping[str, Any] = "unf", encoder_kwargs: Mapping[str, Any] | None = None,
                 residual: bool = True,
                 residual_init: float = 1e-2, kernel: int = 3, lr: float = 1e-3, weight_decay: float = 0.0,
                 scheduler: str | None = "cosine"):
        super().__init__()
        self._save(locals(), encoder=resolve_encoder(encoder, encoder_kwargs), encoder_kwargs=None)
        spec = as_spec(spec)
        if spec.input_dims != 0 or spec.in_features != 2:
            raise WeightSpaceError(f"inr_editing needs INRs of 2-d coordinates, got {spec.describe()}")
        if len(weight_mean) != len(spec.params) or len(weight_std) != len(spec.params):
            raise WeightSpaceError(f"need one weight mean/std per parameter tensor ({len(spec.params)})")
        self.encoder, self.dropped_kwargs = build_equivariant(
            self.hparams.encoder, spec, residual=bool(residual), residual_init=float(residual_init))
        from wspace.coordinates import coordinate_grid

        self.register_buffer("coords", coordinate_grid(int(resolution)), persistent=False)
        self.register_buffer("w_mean", torch.tensor([float(v) for v in weight_mean]), persistent=False)
        self.register_buffer("w_std", torch.tensor([float(v) for v in weight_std]), persistent=False)

    @classmethod
    def from_datamodule(cls, dm: Any, **kwargs: Any) -> "InrEditing":
        st = dm.stats
        return cls(dm.spec, st.mean.tolist(), st.std.tolist(), inr_resolution(dm.zoo), **kwargs)

    def forward(self, ws: WeightSpace) -> WeightSpace:
        """Edited (normalized) weights."""
        return self.encoder(ws)

    def render(self, ws: WeightSpace) -> torch.Tensor:
        """Images ``[B, C, R, R]`` of normalized weights ``ws`` (denormalized, evaluated on the grid)."""
        raw = WeightSpace(ws.spec, [t * s.to(t.dtype) + m.to(t.dtype)
                                    for t, m, s in zip(ws.tensors, self.w_mean, self.w_std)])
        out = raw(self.coords.to(raw.dtype))  # [B, P, C]
        r = int(self.hparams.resolution)
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], r, r)

    def _losses(self, ws: WeightSpace) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            src = self.render(ws)
            target = dilate(src, int(self.hparams.kernel))
        pred = self.render(self(ws))
        return F.mse_loss(pred, target), F.mse_loss(src, target)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ws, _ = batch
        loss, base = self._losses(ws)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(ws))
        self.log("train/identity_mse", base, on_step=False, on_epoch=True, batch_size=len(ws))
        return loss

    def _eval_step(self, stage: str, batch: Any) -> None:
        ws, _ = batch
        loss, base = self._losses(ws)
        s = self._eval.setdefault(stage, [0.0, 0.0, 0.0])
        s[0] += float(loss) * len(ws)  # equal pixels per INR: the split MSE is the mean of per-batch MSEs by size
        s[1] += float(base) * len(ws)
        s[2] += len(ws)

    def _eval_end(self, stage: str) -> None:
        mse, base, n = self._eval.pop(stage, [0.0, 0.0, 0.0])
        if n:
            self._log_epoch(stage, {"loss": mse / n, "mse": mse / n, "identity_mse": base / n})
