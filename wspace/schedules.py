"""Learning-rate multipliers shared by every training loop of the library (encoder tasks and
generator stages), for ``torch.optim.lr_scheduler.LambdaLR``."""
from __future__ import annotations

import math

__all__ = ["cosine_factor", "warmup_cosine_factor"]


def cosine_factor(progress: float, floor: float = 0.0) -> float:
    """Cosine multiplier over ``progress`` in [0, 1] (clamped): 1 at 0, ``floor`` at 1."""
    p = min(1.0, max(0.0, progress))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))


def warmup_cosine_factor(step: int, total: int, warmup: int, floor: float = 0.0) -> float:
    """Linear warmup over ``warmup`` steps, then :func:`cosine_factor` down to ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return cosine_factor((step - warmup) / max(1, total - warmup), floor)
