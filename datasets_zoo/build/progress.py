"""The build's progress (whole networks, fractional within a chunk).

On a terminal: a live tqdm bar. Elsewhere (a log file, a pipe, CI): whole lines from
:class:`wspace.progress.LineReporter`, one per finished chunk and at most one every
``WSPACE_PROGRESS_EVERY`` seconds (default 30) in between, never a carriage-return stream.
"""
from __future__ import annotations

from wspace.progress import LineReporter, is_terminal

__all__ = ["Progress"]


class Progress:
    """Progress over ``total`` networks: a tqdm bar on a terminal, lines otherwise, or
    nothing when not ``enabled``."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        self.lines: LineReporter | None = None
        self.total = total
        self.done = 0.0
        if enabled and is_terminal():
            from tqdm.auto import tqdm

            # fractional progress within a chunk (epochs): show whole networks
            self.bar = tqdm(total=total, desc=desc, unit="model", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")
        elif enabled:
            self.lines = LineReporter(desc)
            self.lines.line(f"training {total} networks")
            self.lines.last = self.lines.clock()

    def _text(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{int(self.done)}/{self.total} networks ({pct:.0f}%)"
        if self.lines is not None and 0 < self.done < self.total:
            left = self.lines.elapsed() * (self.total - self.done) / self.done
            text += f", about {int(round(left))} s left"
        return text

    def update(self, n: float) -> None:
        """Advance by ``n`` networks (fractional within a chunk; never past ``total``)."""
        n = max(0.0, min(float(n), self.total - self.done))
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines is not None:
            self.lines.tick(self._text)

    def finish_chunk(self, done_before: float, m: int) -> None:
        """Round the progress to whole networks at the end of a chunk (a line, off a terminal)."""
        self.done = min(float(done_before + m), float(self.total))
        if self.bar is not None:
            self.bar.n = self.done
            self.bar.refresh()
        elif self.lines is not None:
            self.lines.line(self._text())

    @property
    def n(self) -> float:
        """Networks done so far (fractional within a chunk)."""
        return self.done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
