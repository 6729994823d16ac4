"""Lightning checkpoints that survive interrupts: shared by encoder training
(``wspace train``) and the generators' fixed-step stages (:mod:`generators.fitting`).

* :class:`SaveOnInterrupt` writes ``last.ckpt`` when fitting is interrupted (Ctrl-C,
  SIGTERM; see :mod:`wspace.interrupt`), so that a rerun resumes mid-epoch or mid-stage.
  While training it polls :func:`wspace.interrupt.check` before every step (after all hooks
  of the previous one ran, e.g. an EMA update), so a signal usually stops the run at a step
  boundary and the checkpoint holds whole steps.
* :class:`AtomicCheckpointIO` makes every checkpoint write atomic (temporary file, then
  rename): a run killed while saving keeps its previous checkpoint intact.
* :func:`check_checkpoint` reads a checkpoint before a resume (``weights_only=True``), so
  that a corrupt or truncated ``last.ckpt`` is a named error instead of a traceback.
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
from wspace.errors import WeightSpaceError

__all__ = ["SaveOnInterrupt", "AtomicCheckpointIO", "is_interrupt", "check_checkpoint"]


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


def check_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read the Lightning checkpoint ``path`` (``torch.load(weights_only=True)``: never
    unpickling objects) and return it.

    Raises:
        WeightSpaceError: the file is missing, truncated or corrupt, or is not a Lightning
            checkpoint (no ``state_dict``); the message says how to start over.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    how = ("delete it to restart from the last finished stage, or pass overwrite=true to start the run over")
    if not path.is_file():
        raise WeightSpaceError(f"checkpoint not found ({how})", file=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightSpaceError(f"refused to load: the checkpoint holds objects other than tensors and plain "
                               f"values ({str(e).splitlines()[0]}); {how}", file=path) from e
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile, UnicodeDecodeError, OverflowError, MemoryError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise WeightSpaceError(f"corrupt or truncated checkpoint ({first}); {how}", file=path) from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise WeightSpaceError(f"not a Lightning checkpoint (no state_dict); {how}", file=path)
    return ckpt


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

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
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
