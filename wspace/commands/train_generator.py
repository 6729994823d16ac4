"""``wspace train generator=<name>``: train a weight generator on a zoo.

``wspace.tasks.train:main`` hands the composed config here when ``cfg.generator`` is
set. ``cfg`` has ``zoo``, ``out``, ``seed``, ``device``, ``trainer`` (Lightning Trainer
keyword arguments; ``max_epochs`` is ignored: the generator's stages run a fixed number
of steps) and ``generator`` (``configs/train/generator/<name>.yaml``).
"""
from __future__ import annotations

from typing import Any

from wspace.config import to_plain
from wspace.errors import WeightSpaceError

__all__ = ["main", "GENERATORS"]

GENERATORS = ("d2nwg",)


def main(cfg: Any):
    """Train the generator ``cfg.generator`` on ``cfg.zoo`` into ``cfg.out``; returns the pipeline."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    gen = to_plain(get("generator"))
    if not gen:
        raise WeightSpaceError("no generator chosen: add generator=d2nwg")
    if get("zoo") in (None, "???") or get("out") in (None, "???"):
        raise WeightSpaceError("train needs zoo=<dir> and out=<dir>")
    gen = dict(gen)
    name = gen.pop("name", "d2nwg")
    if name not in GENERATORS:
        raise WeightSpaceError(f"unknown generator '{name}'; available: {list(GENERATORS)}")
    trainer = dict(to_plain(get("trainer")) or {})
    progress = bool(trainer.get("enable_progress_bar", True))
    from generators.d2nwg import train_d2nwg

    pipe = train_d2nwg(str(get("zoo")), str(get("out")), seed=int(get("seed", 0) or 0),
                       device=str(get("device", "cpu") or "cpu"), trainer=trainer, progress=progress, config=gen)
    print(f"trained {pipe!r}; pipeline saved to {get('out')}/pipeline "
          f"(sample with: wspace sample checkpoint={get('out')} task=<name> out=<dir>)")
    return pipe
