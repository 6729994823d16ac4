"""Zoo build presets: finding, loading (size and overrides merged in) and validating them.

A preset (``configs/zoo_build/zoo/<name>.yaml``) says what to train; see
:mod:`datasets_zoo.build` for its keys.
"""
from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Mapping

from wspace.config import to_plain
from wspace.errors import WeightSpaceError

from ..train_vectorized import OPTIMIZERS
from .architectures import validate_architectures

__all__ = ["SIZES", "KINDS", "preset_names", "load_preset"]

SIZES = ("small", "full")
KINDS = ("classifier", "inr")
_PRESET_KEYS = {
    "name", "description", "kind", "task", "tasks", "family", "family_kwargs", "hparams", "search", "epochs",
    "save_epochs", "batch_size", "chunk_size", "inr", "sizes", "architectures",
}
# hyperparameters that are training settings (everything else that names a family kwarg shapes the spec)


def preset_names() -> list[str]:
    """The presets shipped in ``configs/zoo_build/zoo/``."""
    d = resources.files("configs") / "zoo_build" / "zoo"
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml"))


def _deep_merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_preset(preset: str | Mapping, size: str = "full", overrides: Mapping | None = None) -> dict:
    """A preset as a plain dict, with ``sizes[size]`` and then ``overrides`` merged in.

    ``preset`` is a preset name (``configs/zoo_build/zoo/<name>.yaml``), a path to a YAML file, or
    a mapping (e.g. the ``zoo`` node of the Hydra config).
    """
    if size not in SIZES:
        raise WeightSpaceError(f"size must be one of {SIZES}, got {size!r}")
    if isinstance(preset, str):
        from omegaconf import OmegaConf

        path = Path(preset)
        if not (path.suffix in (".yaml", ".yml") and path.is_file()):
            f = resources.files("configs") / "zoo_build" / "zoo" / f"{preset}.yaml"
            if not f.is_file():
                raise WeightSpaceError(f"unknown zoo preset '{preset}'; known: {preset_names()}")
            path = Path(str(f))
        cfg = to_plain(OmegaConf.load(path))
    else:
        cfg = to_plain(preset)
    if not isinstance(cfg, dict):
        raise WeightSpaceError(f"a zoo preset must be a mapping, got {type(cfg).__name__}")
    sizes = cfg.pop("sizes", None) or {}
    cfg = _deep_merge(cfg, sizes.get(size) or {})
    if overrides:
        cfg = _deep_merge(cfg, to_plain(overrides))
    _validate(cfg)
    validate_architectures(cfg)  # the architectures: key (datasets_zoo/build/architectures.py)
    return cfg


def _validate(cfg: dict) -> None:
    name = cfg.get("name", "?")
    unknown = set(cfg) - _PRESET_KEYS
    if unknown:
        raise WeightSpaceError(f"zoo preset '{name}': unknown key(s) {sorted(unknown)}; known: {sorted(_PRESET_KEYS)}")
    for k in ("name", "kind", "task") + (() if cfg.get("architectures") else ("family",)):
        if k not in cfg:
            raise WeightSpaceError(f"zoo preset '{name}': missing key '{k}'")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(cfg["name"])):
        raise WeightSpaceError(f"zoo preset name '{cfg['name']}' may only use letters, digits, '_', '.', '-'")
    if cfg["kind"] not in KINDS:
        raise WeightSpaceError(f"zoo preset '{name}': kind must be one of {KINDS}, got {cfg['kind']!r}")
    if float((cfg.get("family_kwargs") or {}).get("dropout", 0.0)) != 0.0:
        raise WeightSpaceError(f"zoo preset '{name}': set dropout in hparams/search, not family_kwargs "
                               "(dropout is a training setting; stored networks are the eval-mode architecture)")
    if cfg["kind"] == "classifier":
        for k in ("epochs", "batch_size"):
            if not isinstance(cfg.get(k), int) or cfg[k] < 1:
                raise WeightSpaceError(f"zoo preset '{name}': '{k}' must be a positive integer")
        bad = [e for e in cfg.get("save_epochs", []) if not (isinstance(e, int) and 0 <= e <= cfg["epochs"])]
        if bad or not cfg.get("save_epochs"):
            raise WeightSpaceError(f"zoo preset '{name}': save_epochs must be a non-empty list of epochs in "
                                   f"0..{cfg['epochs']}, got {cfg.get('save_epochs')}")
    _validate_values(cfg, name)
    opt = (cfg.get("hparams") or {}).get("optimizer")
    if opt is not None and opt not in OPTIMIZERS:
        raise WeightSpaceError(f"zoo preset '{name}': optimizer must be one of {OPTIMIZERS}, got {opt!r}")


def _validate_values(cfg: dict, name: str) -> None:
    """Counts are positive integers, fractions lie in [0, 1], numbers are finite."""
    import math

    def positive(where: str, v: object, nullable: bool = False) -> None:
        if v is None and nullable:
            return
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise WeightSpaceError(f"zoo preset '{name}': '{where}' must be a positive integer, got {v!r}")

    if "chunk_size" in cfg:
        positive("chunk_size", cfg["chunk_size"], nullable=True)
    search = cfg.get("search") or {}
    for k in ("runs", "seeds", "limit"):
        if k in search:
            positive(f"search.{k}", search[k], nullable=k == "limit")
    tasks = cfg.get("tasks") or {}
    if isinstance(tasks, dict):
        if "subsets" in tasks:
            positive("tasks.subsets", tasks["subsets"])
        if "limit" in tasks:
            positive("tasks.limit", tasks["limit"], nullable=True)
        f = tasks.get("heldout_fraction", 0.0)
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0.0 <= f <= 1.0):
            raise WeightSpaceError(f"zoo preset '{name}': 'tasks.heldout_fraction' must lie in [0, 1], got {f!r}")
    inr = cfg.get("inr") or {}
    for k in ("variants", "views", "images_per_split"):
        if k in inr:
            positive(f"inr.{k}", inr[k], nullable=k == "images_per_split")
    for k, v in (cfg.get("hparams") or {}).items():
        if isinstance(v, float) and not math.isfinite(v):
            raise WeightSpaceError(f"zoo preset '{name}': 'hparams.{k}' must be a finite number, got {v!r}")
        if k == "steps":
            positive("hparams.steps", v)
