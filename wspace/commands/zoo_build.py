"""``wspace zoo build zoo=<preset> out=<dir> [size=small] [seed=0] [device=cpu]``: train a
population of small networks and write it as a native zoo (:func:`datasets_zoo.build.build_zoo`).

Config: ``configs/zoo_build/zoo_build.yaml``; preset values are overridden as ``zoo.<key>=...``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets_zoo import Zoo
from datasets_zoo.build import build_zoo
from wspace import interrupt
from wspace.config import to_plain
from wspace.errors import WeightSpaceError

__all__ = ["main"]


def main(cfg: Any) -> Path:
    """Entry point of ``wspace zoo build``: ``cfg`` has ``zoo`` (the preset), ``out``,
    and optionally ``size`` (``small``/``full``, default ``full``), ``seed``, ``device``,
    ``chunk_size`` and ``progress``."""
    zoo = cfg.get("zoo")
    if zoo is None or cfg.get("out") is None:
        raise WeightSpaceError("zoo build needs zoo=<preset> and out=<dir>")
    zoo = to_plain(zoo)
    # the size is a top-level key (size=small); `+zoo.size=small` is accepted too
    size = cfg.get("size", None) or (zoo.pop("size", None) if isinstance(zoo, dict) else None) or "full"
    if isinstance(zoo, dict):
        zoo.pop("size", None)
    interrupt.set_resume_hint(f"the networks already written to {cfg.get('out')} are kept")
    out = build_zoo(
        zoo, cfg.get("out"), size=str(size), seed=int(cfg.get("seed", 0) or 0),
        device=str(cfg.get("device", "cpu") or "cpu"), chunk_size=cfg.get("chunk_size"),
        progress=bool(cfg.get("progress", True)),
    )
    print(f"zoo written to {out} ({len(Zoo.open(out))} checkpoints)")
    return out
