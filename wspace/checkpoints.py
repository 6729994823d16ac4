"""Lightning checkpoints that survive interrupts: shared by encoder training
(``wspace train``) and the generators' fixed-step stages (:mod:`generators.fitting`).

* :class:`SaveOnInterrupt` writes ``last.ckpt`` when fitting is interrupted (Ctrl-C,
  SIGTERM; see :mod:`wspace.interrupt`), so that a rerun resumes mid-epoch or mid-stage.
  While training it polls :func:`wspace.interrupt.check` after every step, so a signal
  usually stops the run at a step boundary.
* :class:`AtomicCheckpointIO` makes every checkpoint write atomic (temporary file, then
  rename): a run killed while saving keeps its previous checkpoint intact.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from wspace import interrupt

__all__ = ["SaveOnInterrupt", "AtomicCheckpointIO", "is_interrupt"]


def is_interrupt(exception: BaseException) -> bool:
    """Whether ``exception`` is a user or scheduler interrupt (Ctrl-C, SIGTERM), not a failure."""
    return isinstance(exception, (KeyboardInterrupt, SIGTERMException))


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


class SaveOnInterrupt(Callback):
    """Write ``path`` (a ``last.ckpt``) when fitting is interrupted, so that a rerun resumes.

    Only an interrupt (:func:`is_interrupt`) after training started in this run saves:
    other exceptions (bugs, NaNs) leave the last regular checkpoint alone, and an interrupt
    during setup (before a resumed checkpoint is restored) or during testing must not
    overwrite it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.polling = False

    def _stop_polling(self) -> None:
        if self.polling:
            self.polling = False
            interrupt.poll_end()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.polling = True
        interrupt.poll_begin()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        interrupt.check()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._stop_polling()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._stop_polling()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        interrupt.disarm()  # saving now: no deferred interrupt in the middle of it
        started = self.polling
        self._stop_polling()
        if is_interrupt(exception) and started and trainer.state.fn == "fit" and not trainer.fast_dev_run:
            trainer.save_checkpoint(str(self.path), weights_only=False)  # the full state: a resume continues
