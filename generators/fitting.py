"""Fitting one training stage of a generator with Lightning: a fixed number of steps over
endless random mini-batches of in-memory tensors, resumable checkpoints, CSV logs.

``fit_stage`` writes ``out/checkpoints/<stage>/last.ckpt`` (every ``every`` steps, and when
interrupted by Ctrl-C or SIGTERM, see :class:`wspace.checkpoints.SaveOnInterrupt`; a rerun
resumes from it) and ``out/logs/<stage>/version_<k>/metrics.csv`` (``version_0`` for the first
run, one more per resumed run: Lightning's CSV logger would overwrite a reused version). The device comes from
``wspace.devices.trainer_device`` when the Trainer arguments leave the accelerator on
``auto``, as ``wspace train`` does for encoders.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from wspace.checkpoints import AtomicCheckpointIO, SaveOnInterrupt
from wspace.devices import trainer_device
from wspace.progress import progress_callbacks
from wspace.schedules import warmup_cosine_factor

__all__ = ["RandomBatches", "random_batches", "cosine_schedule", "stage_trainer_kwargs", "fit_stage"]

# Trainer arguments a stage sets itself (fixed steps, its own logger and checkpoints)
STAGE_OWNED = ("max_epochs", "max_steps", "logger", "callbacks", "default_root_dir")


class RandomBatches(torch.utils.data.IterableDataset):
    """Endless random mini-batches of in-memory tensors (no per-item collation)."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int):
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        g = torch.Generator().manual_seed(self.seed)
        n = len(self.tensors[0])
        while True:
            perm = torch.randperm(n, generator=g)
            for a in range(0, n - min(self.batch_size, n) + 1, min(self.batch_size, n)):
                i = perm[a:a + min(self.batch_size, n)]
                yield tuple(t[i] for t in self.tensors)


def random_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    """A DataLoader over :class:`RandomBatches` (batches are made by the dataset)."""
    return torch.utils.data.DataLoader(RandomBatches(tensors, batch_size, seed), batch_size=None)


def cosine_schedule(opt: torch.optim.Optimizer, total: int, warmup: int) -> dict[str, Any]:
    """Lightning's per-step ``lr_scheduler`` entry: linear warmup, cosine decay to 5%."""
    f = functools.partial(warmup_cosine_factor, total=total, warmup=warmup, floor=0.05)
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, f), "interval": "step"}


def stage_trainer_kwargs(trainer: Mapping[str, Any] | None, device: str = "cpu") -> dict[str, Any]:
    """User Trainer arguments with ``device`` deciding the accelerator when they say ``auto``."""
    kw = dict(trainer or {})
    if kw.get("accelerator", "auto") == "auto":
        kw.update(trainer_device(device))
    return kw


def fit_stage(module: Any, stage: str, out: Path, steps: int, loader: Any, trainer_kwargs: Mapping[str, Any],
              every: int, progress: bool) -> None:
    """Train ``module`` for ``steps`` steps on ``loader`` (see the module docstring)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    kw = {k: v for k, v in trainer_kwargs.items() if k not in STAGE_OWNED}
    kw.setdefault("accelerator", "cpu")
    kw.setdefault("devices", 1)
    kw["enable_progress_bar"] = bool(kw.get("enable_progress_bar", True) and progress)
    kw["log_every_n_steps"] = max(1, min(int(kw.get("log_every_n_steps") or 10), steps))
    ckdir = out / "checkpoints" / stage
    cb = ModelCheckpoint(dirpath=ckdir, save_last=True, every_n_train_steps=max(1, every), save_top_k=0)
    last = ckdir / "last.ckpt"
    on_exc = SaveOnInterrupt(last)  # Ctrl-C / SIGTERM mid-stage still leaves a resumable last.ckpt
    kw.setdefault("plugins", [AtomicCheckpointIO()])  # a run killed while saving keeps its previous checkpoint
    # a live bar on a terminal, a line every few seconds elsewhere (wspace.progress)
    bars = progress_callbacks(kw["enable_progress_bar"], name=stage)
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=CSVLogger(str(out / "logs"), name=stage),
                        callbacks=[cb, on_exc, *bars], enable_model_summary=False, default_root_dir=str(out),
                        num_sanity_val_steps=0, **kw)
    # resuming reads our own Lightning checkpoint (written by this function) from `out`, never unpickling
    trainer.fit(module, loader, ckpt_path=str(last) if last.is_file() else None, weights_only=True)
