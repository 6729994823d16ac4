"""The build's progress bar (whole networks, fractional within a chunk)."""
from __future__ import annotations

__all__ = ["Progress"]


class Progress:
    """A tqdm bar over networks, or nothing when not ``enabled``."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            # fractional progress within a chunk (epochs): show whole networks
            self.bar = tqdm(total=total, desc=desc, unit="model", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")

    def update(self, n: float) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish_chunk(self, done_before: float, m: int) -> None:
        """Round the bar to whole networks at the end of a chunk."""
        if self.bar is not None:
            self.bar.n = done_before + m
            self.bar.refresh()

    @property
    def n(self) -> float:
        return self.bar.n if self.bar is not None else 0.0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
