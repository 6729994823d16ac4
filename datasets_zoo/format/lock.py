"""An advisory lock (``flock`` on a file in the zoo) so that two writers never append to one zoo."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO

from wspace.errors import WeightSpaceError

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

__all__ = ["LOCK_FILE", "WriterLock"]

LOCK_FILE = ".writer.lock"


class WriterLock:
    """The writer lock of the zoo directory ``path``; :meth:`acquire` raises if another
    process (or writer) holds it. A no-op where ``fcntl`` is missing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh: IO | None = None

    @property
    def supported(self) -> bool:
        """Whether locks exist on this platform."""
        return fcntl is not None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        fh = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.close()
            raise WeightSpaceError("another ZooWriter is writing this zoo", file=self.path) from e
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
