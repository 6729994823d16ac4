"""The native zoo format (written by ``wspace zoo build`` and :class:`~datasets_zoo.format.ZooWriter`)
as a format of :func:`datasets_zoo.adapters.open_source`; the format itself is
:mod:`datasets_zoo.format`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from wspace.errors import WeightSpaceError

from ..format import NativeSource, is_native_zoo

__all__ = ["NAME", "detect", "open_source"]

NAME = "native"


def detect(path: Path) -> bool:
    """True for a directory with a native ``zoo.json``."""
    return is_native_zoo(path)


def open_source(path: Path, **kwargs: Any) -> NativeSource:
    """Open a native zoo (it takes no reader options)."""
    if kwargs:
        raise WeightSpaceError(f"a native zoo takes no reader options, got {sorted(kwargs)}", file=path)
    return NativeSource(path)
