"""Readers for zoo formats: the native one and the public ones.

=================  ==========================================================  =====================
format             what is on disk                                             module
=================  ==========================================================  =====================
``native``         ``zoo.json`` + ``manifest.jsonl`` + safetensors shards      ``native``
``small_cnn_zoo``  ``weights.npy`` + ``metrics.csv(.gz)`` + ``layout.csv``     ``small_cnn_zoo``
``model_zoos``     ray-tune trials: ``result.json`` + ``checkpoint_*/``        ``model_zoos``
``nfn``            ``<prefix>_<digit>s/net<idx>.pth``                          ``nfn``
``dwsnets``        ``*split*.json`` + ``mnist_png_*/**/*.pth``                 ``dwsnets``
``plain``          ``*.safetensors`` / ``*.pt`` (+ optional metadata table)    ``plain``
=================  ==========================================================  =====================

:func:`detect_format` tries them in that order; :func:`open_source` opens one.

Adding a format is one module here (a ``detect(path) -> bool`` and an
``open_source(path, **options) -> ZooSource``; helpers in :mod:`.support`) plus one
config, ``configs/zoo_format/<name>.yaml`` (see :mod:`.registry`), whose ``order``
places it in the detection order. ``FORMATS`` (name -> ``(detect, open)``, in
detection order) is built from those configs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from wspace.errors import WeightSpaceError

from ..source import ZooSource
from .registry import ZooFormat, zoo_formats

__all__ = ["FORMATS", "formats", "detect_format", "open_source", "ZooSource", "ZooFormat", "zoo_formats"]


def __getattr__(name: str) -> Any:
    if name == "FORMATS":  # built from the configs on first use
        return formats()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def formats() -> dict[str, tuple[Callable[[Path], bool], Callable[..., ZooSource]]]:
    """name -> ``(detect(path) -> bool, open(path, **kwargs) -> ZooSource)``, in detection order."""
    return {name: (f.detect, f.open) for name, f in zoo_formats().items()}


def detect_format(path: str | os.PathLike) -> str:
    """The name of the format of the zoo at ``path`` (see the table above)."""
    path = Path(path)
    if not path.exists():
        raise WeightSpaceError("no such file or directory", file=path)
    fmts = zoo_formats()
    if path.is_file():
        for name, f in fmts.items():
            if f.single_file and f.detect(path):
                return name
        raise WeightSpaceError("not a zoo: a single file must be a .safetensors/.pt/.pth checkpoint", file=path)
    for name, f in fmts.items():
        if f.detect(path):
            return name
    raise WeightSpaceError(f"no zoo format recognized (known: {list(fmts)})", file=path)


def open_source(path: str | os.PathLike, format: str | None = None, **kwargs: Any) -> ZooSource:
    """Open the zoo at ``path`` (format detected unless given); ``kwargs`` go to the reader."""
    path = Path(path)
    name = format or detect_format(path)
    fmts = zoo_formats()
    if name not in fmts:
        raise WeightSpaceError(f"unknown zoo format '{name}'; known: {list(fmts)}", file=path)
    if not path.exists():
        raise WeightSpaceError("no such file or directory", file=path)
    try:
        return fmts[name].open(path, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise WeightSpaceError(f"the '{name}' reader does not take that option: {e}", file=path) from e
