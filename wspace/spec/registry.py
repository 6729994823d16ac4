"""The registry of module families: classes :meth:`WeightSpaceSpec.build_module
<wspace.spec.WeightSpaceSpec.build_module>` can rebuild by name (the built-in ones are in
:mod:`wspace.families`)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import WeightSpaceError

_FAMILIES: dict[str, Callable[..., nn.Module]] = {}


def register_family(name: str) -> Callable[[type], type]:
    """Class decorator: make ``WeightSpaceSpec.build_module`` able to rebuild this class.

    The class must store its constructor kwargs (JSON-serializable) in
    ``self.wspace_config`` so that :func:`~wspace.spec.spec_from_module` can record them.

    Args:
        name: the family name recorded in the spec (``WeightSpaceSpec.family``).

    Returns:
        The decorator, which registers the class and sets its ``wspace_family``.
    """

    def deco(cls: type) -> type:
        _FAMILIES[name] = cls
        cls.wspace_family = name
        return cls

    return deco


def get_family(name: str) -> Callable[..., nn.Module]:
    """The class registered under ``name`` by :func:`register_family`.

    Raises:
        WeightSpaceError: when no family of that name is registered.
    """
    # the built-in families (wspace.families) register themselves when `wspace` is imported
    if name not in _FAMILIES:
        raise WeightSpaceError(f"unknown module family '{name}'; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]
