"""Progress that fits where it goes: a live bar on a terminal, a few plain lines elsewhere.

On a terminal (``sys.stderr.isatty()``) training shows Lightning's
:class:`~lightning.pytorch.callbacks.TQDMProgressBar` and the zoo builder its tqdm bar.
Anywhere else (a log file, a pipe, CI, a cluster job) a carriage-return stream would fill
the log with thousands of bar redraws, so progress is written as whole lines instead:
:class:`LineProgress` (a Lightning progress-bar callback) prints one line at the end of
each training epoch and at most one every :func:`line_interval` seconds in between, with
the step, the epoch and the logged metrics; :class:`LineReporter` does the same for loops
outside Lightning (the zoo builder).

Turning progress off (``enable_progress_bar=false`` / ``progress=false``) still means
silence: :func:`progress_callbacks` then returns no callback. The interval of the lines is
``WSPACE_PROGRESS_EVERY`` seconds (default :data:`DEFAULT_EVERY`).

Typical use::

    from wspace.progress import progress_callbacks
    trainer = L.Trainer(enable_progress_bar=enabled, callbacks=[*progress_callbacks(enabled, name="train")])
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence, TextIO

from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

__all__ = ["DEFAULT_EVERY", "ENV_EVERY", "is_terminal", "line_interval", "format_metrics", "LineReporter",
           "LineProgress", "progress_callbacks", "fitting_log_interval"]

#: seconds between two progress lines on a non-terminal (besides the per-epoch / per-chunk lines)
DEFAULT_EVERY = 30.0
#: the environment variable that overrides :data:`DEFAULT_EVERY`
ENV_EVERY = "WSPACE_PROGRESS_EVERY"


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: ``sys.stderr``, where progress goes) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def line_interval(every: float | None = None) -> float:
    """Seconds between progress lines: ``every`` if given, else ``$WSPACE_PROGRESS_EVERY``,
    else :data:`DEFAULT_EVERY` (an unreadable or negative value falls back to the default)."""
    if every is None:
        raw = os.environ.get(ENV_EVERY, "")
        try:
            every = float(raw) if raw.strip() else DEFAULT_EVERY
        except ValueError:
            every = DEFAULT_EVERY
    return float(every) if math.isfinite(float(every)) and float(every) >= 0 else DEFAULT_EVERY


def _scalar(v: Any) -> float | None:
    try:
        if hasattr(v, "numel"):
            return float(v.item()) if v.numel() == 1 else None
        return float(v)
    except (TypeError, ValueError):
        return None


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``k=v`` for each scalar in ``metrics`` (4 significant digits), sorted by name."""
    parts = []
    for k in sorted(metrics):
        x = _scalar(metrics[k])
        if x is not None:
            parts.append(f"{k}={x:.4g}")
    return " ".join(parts)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LineReporter:
    """Whole progress lines for a loop outside Lightning: :meth:`tick` prints when at least
    ``every`` seconds passed since the last line, :meth:`line` prints now.

    Args:
        desc: prefix of every line (e.g. ``"zoo digits-cnn"``).
        every: seconds between :meth:`tick` lines (see :func:`line_interval`).
        stream: where lines go (default ``sys.stderr``, looked up when printing).
        clock: the time source (for tests).
    """

    def __init__(self, desc: str, every: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.desc, self.every, self.stream, self.clock = desc, line_interval(every), stream, clock
        self.start = self.last = clock()

    def elapsed(self) -> float:
        """Seconds since the reporter was made."""
        return self.clock() - self.start

    def line(self, text: str) -> None:
        """Print ``"<desc>: <text> [elapsed]"`` as one line now."""
        print(f"{self.desc}: {text} [{_clock(self.elapsed())}]", file=self.stream or sys.stderr, flush=True)
        self.last = self.clock()

    def tick(self, text: str | Callable[[], str]) -> bool:
        """Print ``text`` (or what the callable returns) if ``every`` seconds passed since the
        last line; returns whether it printed."""
        if self.clock() - self.last < self.every:
            return False
        self.line(text() if callable(text) else text)
        return True


class LineProgress(ProgressBar):
    """Lightning's progress-bar slot filled with plain lines, for a non-terminal.

    One line at the start of fitting, one at the end of every training epoch (after
    validation, so validation metrics are included), at most one every ``every`` seconds
    in between, and one when fitting ends; each line has the epoch, the global step and
    the logged scalar metrics. Validation, test and predict loops print nothing (their
    results are the caller's to print).

    Args:
        name: prefix of every line (e.g. ``"train"`` or a generator stage's name).
        every: seconds between mid-epoch lines (see :func:`line_interval`).
        stream: where lines go (default ``sys.stderr``).
    """

    def __init__(self, name: str = "train", every: float | None = None, stream: TextIO | None = None):
        super().__init__()
        self.name, self.every, self.stream = name, line_interval(every), stream
        self._enabled = True
        self._reporter: LineReporter | None = None
        self._last_step = -1

    # the ProgressBar interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _status(self, trainer: Any, pl_module: Any) -> str:
        epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps > 0 else None
        where = f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs and not steps else "")
        where += f" step {trainer.global_step}" + (f"/{steps}" if steps else "")
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        metrics.update({k: v for k, v in trainer.callback_metrics.items() if k not in metrics})
        shown = format_metrics(metrics)
        return f"{where}{' ' + shown if shown else ''}"

    def _print(self, trainer: Any, pl_module: Any) -> None:
        if self._reporter is not None and self.is_enabled and trainer.is_global_zero:
            self._reporter.line(self._status(trainer, pl_module))
            self._last_step = trainer.global_step

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._reporter = LineReporter(self.name, self.every, self.stream)
        self._last_step = -1
        if self.is_enabled and trainer.is_global_zero:
            total = (f"{trainer.max_steps} steps" if trainer.max_steps and trainer.max_steps > 0
                     else f"{trainer.max_epochs} epochs")
            self._reporter.line(f"fitting from epoch {trainer.current_epoch + 1} step {trainer.global_step} "
                                f"(up to {total}; a line per epoch and every {self.every:g} s)")
            self._reporter.last = self._reporter.clock()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._reporter is not None and self._reporter.clock() - self._reporter.last >= self.every:
            self._print(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._print(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.global_step != self._last_step:
            self._print(trainer, pl_module)


def progress_callbacks(enabled: bool, name: str = "train", every: float | None = None,
                       stream: TextIO | None = None, others: Sequence[Any] = ()) -> list[Callback]:
    """The progress callback for a Lightning ``Trainer``: ``[]`` when not ``enabled`` (pass
    ``enable_progress_bar=enabled`` too) or when ``others`` (the caller's other callbacks)
    already hold a progress bar, Lightning's :class:`TQDMProgressBar` when ``stream``
    (default ``sys.stderr``) is a terminal, else a :class:`LineProgress`."""
    if not enabled or any(isinstance(c, ProgressBar) for c in others):
        return []
    if is_terminal(stream):
        return [TQDMProgressBar()]
    return [LineProgress(name, every, stream)]


def fitting_log_interval(requested: int | None, loader: Any = None, default: int = 50) -> int:
    """A ``log_every_n_steps`` no larger than an epoch of ``loader`` (Lightning warns, and
    logs no training metric in a short epoch, otherwise): ``requested`` (or ``default``)
    capped at ``len(loader)`` when the loader has a length, and at least 1."""
    n = int(requested or default)
    try:
        batches = len(loader) if loader is not None else 0
    except TypeError:  # an iterable-style loader: no length
        batches = 0
    if batches > 0:
        n = min(n, batches)
    return max(1, n)
