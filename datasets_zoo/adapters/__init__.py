"""Readers for zoo formats: the native one and the public ones.

=================  ==========================================================  =====================
format             what is on disk                                             module
=================  ==========================================================  =====================
``native``         ``zoo.json`` + ``manifest.jsonl`` + safetensors shards      ``datasets_zoo.format``
``small_cnn_zoo``  ``weights.npy`` + ``metrics.csv(.gz)`` + ``layout.csv``     ``small_cnn_zoo``
``model_zoos``     ray-tune trials: ``result.json`` + ``checkpoint_*/``        ``model_zoos``
``nfn``            ``<prefix>_<digit>s/net<idx>.pth``                          ``nfn``
``dwsnets``        ``*split*.json`` + ``mnist_png_*/**/*.pth``                 ``dwsnets``
``plain``          ``*.safetensors`` / ``*.pt`` (+ optional metadata table)    ``plain``
=================  ==========================================================  =====================

:func:`detect_format` tries them in that order; :func:`open_source` opens one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from wspace.errors import WeightSpaceError

from . import dwsnets, model_zoos, nfn, plain, small_cnn_zoo
from .base import ZooSource

__all__ = ["FORMATS", "detect_format", "open_source", "ZooSource"]


def _open_native(path: Path, **kwargs: Any) -> ZooSource:
    from ..format import NativeSource

    if kwargs:
        raise WeightSpaceError(f"a native zoo takes no reader options, got {sorted(kwargs)}", file=path)
    return NativeSource(path)


def _detect_native(path: Path) -> bool:
    from ..format import is_native_zoo

    return is_native_zoo(path)


# name -> (detect(path) -> bool, open(path, **kwargs) -> ZooSource), in detection order
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[..., ZooSource]]] = {
    "native": (_detect_native, _open_native),
    small_cnn_zoo.NAME: (small_cnn_zoo.detect, small_cnn_zoo.open_source),
    model_zoos.NAME: (model_zoos.detect, model_zoos.open_source),
    nfn.NAME: (nfn.detect, nfn.open_source),
    dwsnets.NAME: (dwsnets.detect, dwsnets.open_source),
    plain.NAME: (plain.detect, plain.open_source),
}


def detect_format(path: str | os.PathLike) -> str:
    """The name of the format of the zoo at ``path`` (see the table above)."""
    path = Path(path)
    if not path.exists():
        raise WeightSpaceError("no such file or directory", file=path)
    if path.is_file():
        if plain.detect(path):
            return plain.NAME
        raise WeightSpaceError("not a zoo: a single file must be a .safetensors/.pt/.pth checkpoint", file=path)
    for name, (detect, _) in FORMATS.items():
        if detect(path):
            return name
    raise WeightSpaceError(f"no zoo format recognized (known: {list(FORMATS)})", file=path)


def open_source(path: str | os.PathLike, format: str | None = None, **kwargs: Any) -> ZooSource:
    """Open the zoo at ``path`` (format detected unless given); ``kwargs`` go to the reader."""
    path = Path(path)
    name = format or detect_format(path)
    if name not in FORMATS:
        raise WeightSpaceError(f"unknown zoo format '{name}'; known: {list(FORMATS)}", file=path)
    if not path.exists():
        raise WeightSpaceError("no such file or directory", file=path)
    try:
        return FORMATS[name][1](path, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise WeightSpaceError(f"the '{name}' reader does not take that option: {e}", file=path) from e
