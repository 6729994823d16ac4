"""Shared parts of the task ``LightningModule`` s: encoder construction, optimizer, hparams.

The ``wspace.nn`` encoders stay plain ``nn.Module`` s; a task module owns one as
``self.encoder`` and adds the loss, the metrics and the optimizer. Hyperparameters are
saved as primitive types only (the spec as JSON), so Lightning checkpoints load with
``torch.load(weights_only=True)`` and ``Task.load_from_checkpoint(path)`` rebuilds the model.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

import lightning as L
from lightning.pytorch.callbacks import Timer
import torch
from torch import nn

from wspace.config import to_plain as plain  # noqa: F401  (re-exported for the tasks)
from wspace.errors import WeightSpaceError
from wspace.schedules import cosine_factor
from wspace.spec import WeightSpaceSpec

__all__ = ["WeightSpaceTask", "build_encoder", "build_equivariant", "as_spec", "plain", "cosine_factor"]


def as_spec(spec: WeightSpaceSpec | str) -> WeightSpaceSpec:
    """A spec from a spec or its JSON."""
    return spec if isinstance(spec, WeightSpaceSpec) else WeightSpaceSpec.from_json(spec)


def _registry(equivariant: bool) -> dict:
    from wspace.nn import ENCODERS, EQUIVARIANT_ENCODERS

    return EQUIVARIANT_ENCODERS if equivariant else ENCODERS


def build_encoder(name: str, spec: WeightSpaceSpec, out_features: int, **kwargs: Any) -> nn.Module:
    """``ENCODERS[name](spec, out_features=out_features, **kwargs)``; unknown names and
    bad arguments raise :class:`WeightSpaceError`."""
    reg = _registry(False)
    if name not in reg:
        raise WeightSpaceError(f"unknown encoder '{name}'; available: {', '.join(sorted(reg))}")
    try:
        return reg[name](spec, out_features=out_features, **kwargs)
    except TypeError as e:
        raise WeightSpaceError(f"encoder '{name}': bad arguments {sorted(kwargs)}: {e}") from e


def build_equivariant(name: str, spec: WeightSpaceSpec, **kwargs: Any) -> tuple[nn.Module, list[str]]:
    """``EQUIVARIANT_ENCODERS[name](spec, **kwargs)``, dropping keyword arguments the
    equivariant variant does not take (e.g. the invariant head's ``head_hidden``).

    Returns the module and the names of the dropped arguments.
    """
    reg = _registry(True)
    if name not in reg:
        raise WeightSpaceError(f"encoder '{name}' has no equivariant (weight -> weight) version; "
                               f"choose from: {', '.join(sorted(reg))}")
    cls = reg[name]
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        keep, dropped = dict(kwargs), []
    else:
        keep = {k: v for k, v in kwargs.items() if k in params}
        dropped = sorted(set(kwargs) - set(keep))
    try:
        return cls(spec, **keep), dropped
    except TypeError as e:
        raise WeightSpaceError(f"equivariant encoder '{name}': bad arguments {sorted(keep)}: {e}") from e


class WeightSpaceTask(L.LightningModule):
    """Base class: AdamW (+ optional cosine decay over the run's step or time budget), hparam saving and
    split-level evaluation.

    Subclasses call ``self._save(locals())`` first in ``__init__`` (all init arguments
    must be primitive or a spec), then build ``self.encoder``. For validation and test
    they implement ``_eval_step(stage, batch)``, accumulating in ``self._eval[stage]``,
    and ``_eval_end(stage)``, which pops it and logs metrics over the whole split (exact,
    independent of batch sizes).
    """

    def __init__(self) -> None:
        super().__init__()
        self._eval: dict[str, Any] = {}

    def _eval_step(self, stage: str, batch: Any) -> None:
        raise NotImplementedError

    def _eval_end(self, stage: str) -> None:
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_validation_epoch_start(self) -> None:
        self._eval.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._eval.pop("test", None)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def _save(self, args: dict) -> None:
        hp = {k: v for k, v in args.items() if k not in ("self", "__class__")}
        if "spec" in hp:
            hp["spec"] = as_spec(hp["spec"]).to_json()
        self.save_hyperparameters(plain(hp))

    @property
    def spec(self) -> WeightSpaceSpec:
        return as_spec(self.hparams.spec)

    def num_parameters(self) -> int:
        """Trainable parameters of the model."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=float(hp.lr), weight_decay=float(hp.weight_decay))
        if hp.scheduler in (None, "none", "constant"):
            return opt
        if hp.scheduler != "cosine":
            raise WeightSpaceError(f"unknown scheduler '{hp.scheduler}'; expected 'cosine' or null")
        if self._trainer is None:
            return opt
        # Decay over whichever budget ends the run first: its steps or its wall-clock time
        # (``max_time``). A step-only cosine under a time budget would stop mid-decay.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: cosine_factor(self.training_progress()))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_progress(self) -> float:
        """Fraction of the run's budget used so far, in [0, 1]: the larger of steps done /
        ``estimated_stepping_batches`` and, when the trainer has ``max_time``, elapsed / allowed
        training time. 0 without a finite budget."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        fractions = [0.0]
        total = trainer.estimated_stepping_batches
        if math.isfinite(total) and total >= 1:
            fractions.append(trainer.global_step / total)
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None:
            elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train")
            if remaining is not None and elapsed + remaining > 0:
                fractions.append(elapsed / (elapsed + remaining))
        return min(1.0, max(fractions))

    # The encoders take a WeightSpace; Lightning moves it with its ``.to`` (it has one).
    def _log_epoch(self, stage: str, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.log(f"{stage}/{k}", float(v), prog_bar=k in self.prog_bar_metrics, sync_dist=False)

    prog_bar_metrics: tuple[str, ...] = ()
