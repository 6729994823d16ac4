"""D2NWG settings: the defaults are the ``generator`` node of ``configs/train/generator/d2nwg.yaml``
(the one place they are written); :func:`resolve_config` merges a user's settings into them."""
from __future__ import annotations

from typing import Any, Mapping

from ..config import generator_defaults, merge_settings, user_settings

__all__ = ["DEFAULT_CONFIG", "resolve_config", "default_config"]

NAME = "d2nwg"


def default_config() -> dict[str, Any]:
    """A fresh copy of D2NWG's defaults (read from the packaged YAML)."""
    return generator_defaults(NAME)


# Every key a user may set (train_d2nwg(**config), the hydra `generator` node): a copy of the YAML defaults.
DEFAULT_CONFIG: dict[str, Any] = default_config()


def resolve_config(config: Mapping | None = None, **overrides: Any) -> dict:
    """The defaults merged with ``config`` and then ``overrides`` (nested dicts; unknown keys
    raise). Accepts a DictConfig (the hydra ``generator`` node; ``_target_`` / ``name`` are ignored)."""
    cfg = merge_settings(default_config(), user_settings(config), "D2NWG")
    return merge_settings(cfg, overrides, "D2NWG")
