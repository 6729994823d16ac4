"""Known-harmless third-party warnings and tips, hidden for the ``wspace`` command only.

:func:`quiet_third_party` is called by the CLI before it runs a subcommand. It is never
called by the library, so Python users of wspace still see every warning. Each filter
names one exact message (and its category or logger); anything else stays visible:

- Lightning's "💡 Tip: ... litlogger / litmodels" INFO lines (an advertisement, printed
  by every ``Trainer``);
- Lightning's "GPU available: False, used: False" and "TPU available: False, using: 0 TPU
  cores" when there is no such device (a machine with a GPU still shows its GPU line);
- Lightning's "Loading `train_dataloader` to estimate number of stepping batches." (an
  implementation detail of the learning-rate schedules);
- torch's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", raised
  inside Lightning's own pytree helper, not by wspace code.
"""
from __future__ import annotations

import logging
import re
import warnings

__all__ = ["HIDDEN_LOG_MESSAGES", "HIDDEN_WARNINGS", "LIGHTNING_LOGGERS", "KnownNoise", "quiet_third_party"]

#: regular expressions of INFO messages of Lightning's loggers that are hidden
HIDDEN_LOG_MESSAGES = (
    r"💡 Tip: For seamless cloud (logging|uploads)",
    r"GPU available: False, used: False$",
    r"TPU available: False, using: 0 TPU cores$",
    r"Loading `train_dataloader` to estimate number of stepping batches\.$",
)
#: ``(message regex, category)`` of the hidden Python warnings
HIDDEN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)
#: the loggers Lightning's ``rank_zero_info`` writes to
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class KnownNoise(logging.Filter):
    """A :class:`logging.Filter` dropping INFO (or lower) records whose message matches one
    of ``patterns`` (default :data:`HIDDEN_LOG_MESSAGES`); warnings and errors always pass."""

    def __init__(self, patterns: tuple[str, ...] = HIDDEN_LOG_MESSAGES):
        super().__init__()
        self.patterns = tuple(re.compile(p) for p in patterns)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(p.match(msg) for p in self.patterns)


def quiet_third_party() -> None:
    """Install the filters of this module (idempotent): a :class:`KnownNoise` on each of
    :data:`LIGHTNING_LOGGERS` and a ``warnings`` "ignore" filter per :data:`HIDDEN_WARNINGS`."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, KnownNoise) for f in logger.filters):
            logger.addFilter(KnownNoise())
    for message, category in HIDDEN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
