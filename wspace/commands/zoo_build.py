"""``wspace zoo build zoo=<preset> out=<dir> [size=small] [seed=0] [device=cpu]``: train a
population of small networks and write it as a native zoo (:func:`datasets_zoo.build.build_zoo`).

Config: ``configs/zoo_build/zoo_build.yaml``; preset values are overridden as ``zoo.<key>=...``.

Explicit overrides win over the preset's size block: ``zoo=digits-cnn size=small
zoo.search.runs=24 zoo.epochs=3`` builds 24 runs of 3 epochs with the small size's other
settings (the values given on the command line are applied after ``sizes.small``). Every
override must keep the type of the preset's value (an integer stays an integer) and sizes
stay positive; ``chunk_size`` must be a positive integer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets_zoo import Zoo
from datasets_zoo.build import build_zoo, load_preset
from wspace import interrupt
from wspace.config import to_plain
from wspace.errors import WeightSpaceError

from .checks import SCHEMAS, check_against_defaults, check_config, check_value, explicit_overrides

__all__ = ["main"]


def _given_top_level(cfg: Any) -> set[str]:
    """The top-level keys set on the command line (empty outside a Hydra run)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return set()
        return {t.split("=", 1)[0].lstrip("+") for t in HydraConfig.get().overrides.task if "=" in t}
    except Exception:
        return set()


def _check_overrides(preset: dict, given: dict, prefix: str = "zoo") -> None:
    """Each explicit override keeps the type of the preset's value, and the common ranges."""
    for k, v in given.items():
        ref = preset.get(k)
        if isinstance(v, dict) and isinstance(ref, dict):
            _check_overrides(ref, v, f"{prefix}.{k}")
        else:
            check_against_defaults({k: v}, {k: ref}, prefix, skip=())


def main(cfg: Any) -> Path:
    """Entry point of ``wspace zoo build``: ``cfg`` has ``zoo`` (the preset), ``out``,
    and optionally ``size`` (``small``/``full``, default ``full``), ``seed``, ``device``,
    ``chunk_size`` and ``progress``."""
    zoo = cfg.get("zoo")
    if zoo is None or cfg.get("out") is None:
        raise WeightSpaceError("zoo build needs zoo=<preset> and out=<dir>")
    check_config("zoo_build", cfg)
    zoo = to_plain(zoo)
    explicit = explicit_overrides(cfg, "zoo")
    # the size is a top-level key (size=small); `+zoo.size=small` is accepted too (it is not a preset value)
    inner = explicit.pop("size", None)
    top = cfg.get("size", None)
    if isinstance(zoo, dict):
        inner = zoo.pop("size", None) or inner
    if inner is not None:
        check_value("zoo.size", inner, SCHEMAS["zoo_build"]["size"])
        if top not in (None, "full", inner) or ("size" in _given_top_level(cfg) and top != inner):
            raise WeightSpaceError(f"size={top} and zoo.size={inner} disagree: give the size once (size=...)")
    size = inner or top or "full"
    interrupt.set_resume_hint(f"the networks already written to {cfg.get('out')} are kept")
    if isinstance(zoo, dict) and explicit:
        try:  # the preset as shipped (the composed node already holds the overrides)
            shipped = load_preset(str(zoo.get("name")), "full")
        except WeightSpaceError:
            shipped = {}
        _check_overrides(shipped, explicit)
    out = build_zoo(
        zoo, cfg.get("out"), size=str(size), seed=int(cfg.get("seed", 0) or 0),
        device=str(cfg.get("device", "cpu") or "cpu"), chunk_size=cfg.get("chunk_size"),
        progress=bool(cfg.get("progress", True)), overrides=explicit or None,
    )
    print(f"zoo written to {out} ({len(Zoo.open(out))} checkpoints)")
    return out
