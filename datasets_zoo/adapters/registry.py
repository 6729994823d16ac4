"""The zoo formats, chosen by config: one ``configs/zoo_format/<name>.yaml`` per format.

Each config instantiates a :class:`ZooFormat` (``_target_``) that names the adapter's
detection function and reader by dotted path::

    _target_: datasets_zoo.adapters.registry.ZooFormat
    name: nfn
    order: 40              # detection order, lower first
    single_file: false     # can one checkpoint file be this format?
    detect: datasets_zoo.adapters.nfn.detect
    open: datasets_zoo.adapters.nfn.open_source

:func:`zoo_formats` reads every packaged config once (on first use) and returns the
formats in detection order; no Python list of formats exists.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from wspace.errors import WeightSpaceError

from ..source import ZooSource

__all__ = ["ZooFormat", "CONFIG_GROUP", "zoo_formats"]

CONFIG_GROUP = "zoo_format"  # configs/<group>/<name>.yaml


def _resolve(target: str | Callable, what: str, name: str) -> Callable:
    if callable(target):
        return target
    from hydra.utils import get_method

    try:
        return get_method(str(target))
    except Exception as e:  # hydra raises ImportError / ValueError variants
        raise WeightSpaceError(f"zoo format '{name}': cannot import its {what} '{target}': {e}") from e


@dataclass(frozen=True)
class ZooFormat:
    """A zoo format: ``detect(path) -> bool`` and ``open(path, **options) -> ZooSource``
    (dotted paths are imported on construction)."""

    name: str
    order: int
    detect: Callable[[Path], bool]
    open: Callable[..., ZooSource]
    single_file: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", int(self.order))
        object.__setattr__(self, "single_file", bool(self.single_file))
        object.__setattr__(self, "detect", _resolve(self.detect, "detection function", self.name))
        object.__setattr__(self, "open", _resolve(self.open, "reader", self.name))


def _load(text: str, origin: str) -> Any:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    fmt = instantiate(OmegaConf.create(text))
    if not isinstance(fmt, ZooFormat):
        raise WeightSpaceError(f"{origin}: a zoo format config must instantiate "
                               f"datasets_zoo.adapters.registry.ZooFormat, got {type(fmt).__name__}")
    return fmt


@functools.lru_cache(maxsize=None)
def zoo_formats() -> dict[str, ZooFormat]:
    """Every format of ``configs/zoo_format/``, by name, in detection order (``order``, then name)."""
    d = resources.files("configs") / CONFIG_GROUP
    found = []
    for f in d.iterdir():
        if f.name.endswith(".yaml"):
            found.append(_load(f.read_text(), f"configs/{CONFIG_GROUP}/{f.name}"))
    found.sort(key=lambda f: (f.order, f.name))
    out: dict[str, ZooFormat] = {}
    for f in found:
        if f.name in out:
            raise WeightSpaceError(f"two zoo format configs are named '{f.name}'")
        out[f.name] = f
    return out
