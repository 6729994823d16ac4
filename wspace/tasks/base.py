"""Shared parts of the task ``LightningModule`` s: the encoder config, optimizer, hparams.

The ``wspace.nn`` encoders stay plain ``nn.Module`` s; a task module owns one as
``self.encoder`` and adds the loss, the metrics and the optimizer. The encoder is given
as a config (``{"_target_": "wspace.nn.UNF", **options}``, or the name of a
``configs/train/encoder`` option) and built with :func:`wspace.nn.build_encoder`.
Hyperparameters are saved as primitive types only (the spec as JSON, the encoder as its
config), so Lightning checkpoints load with ``torch.load(weights_only=True)`` and
``Task.load_from_checkpoint(path)`` rebuilds the model.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import lightning as L
from lightning.pytorch.callbacks import Timer
import torch

from wspace.config import compose_config, group_options
from wspace.config import to_plain as plain
from wspace.errors import WeightSpaceError
from wspace.schedules import cosine_factor
from wspace.spec import WeightSpaceSpec

__all__ = ["WeightSpaceTask", "resolve_encoder", "as_spec", "plain", "cosine_factor"]

def as_spec(spec: WeightSpaceSpec | str) -> WeightSpaceSpec:
    """A spec from a spec or its JSON."""
    return spec if isinstance(spec, WeightSpaceSpec) else WeightSpaceSpec.from_json(spec)


def resolve_encoder(encoder: str | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The encoder config (plain dict with ``_target_``) that ``encoder`` means, ``overrides`` merged in.

    ``encoder`` is a config mapping (``{"_target_": "wspace.nn.UNF", "hidden": 16}``) or the
    name of a ``configs/train/encoder`` option (``"nfn_np"``: that YAML file).
    """
    if isinstance(encoder, str):
        options = group_options("train", "encoder")
        if encoder not in options:
            raise WeightSpaceError(f"unknown encoder '{encoder}' (available: {', '.join(options)}; "
                                   "or a config with a _target_)")
        config = plain(compose_config("train", [f"encoder={encoder}"]).encoder)
    elif isinstance(encoder, Mapping):
        config = plain(encoder)
    else:
        raise WeightSpaceError(f"encoder must be a config mapping with a _target_ or the name of an encoder "
                               f"option, got {type(encoder).__name__}")
    config.update(plain(dict(overrides or {})))
    return config


class WeightSpaceTask(L.LightningModule):
    """Base class: AdamW (+ optional cosine decay over the run's step or time budget), hparam saving and
    split-level evaluation.

    Subclasses call ``self._save(locals(), encoder=<resolved config>)`` first in ``__init__``
    (all init arguments must be primitive or a spec), then build ``self.encoder``. For validation and test
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

    def _save(self, args: dict, **replace: Any) -> None:
        """Save ``args`` (an ``__init__``'s ``locals()``) as hyperparameters, with ``replace``
        (e.g. the resolved encoder config, so a checkpoint does not depend on the YAML files)."""
        hp = {k: v for k, v in args.items() if k not in ("self", "__class__")}
        hp.update(replace)
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
