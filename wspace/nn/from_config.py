"""Encoders from configs: a mapping with ``_target_`` (an :class:`~wspace.nn.Encoder` class) and its options.

The config is what ``configs/train/encoder/<name>.yaml`` holds, e.g.
``{"_target_": "wspace.nn.UNF", "hidden": 32, "layers": 3}``; it is instantiated with
``hydra.utils.instantiate(config, spec, out_features)``. Plain data in, so a task can
keep the config in its hyperparameters and rebuild the encoder from a checkpoint::

    enc = build_encoder({"_target_": "wspace.nn.NFN", "mode": "np"}, spec, 10)
    editor, dropped = build_equivariant({"_target_": "wspace.nn.NFN", "mode": "np", "head_hidden": 64}, spec,
                                        residual=True)   # EquivariantNFN; dropped == ["head_hidden"]

Any class importable by its dotted path works, so a new encoder needs no registration:
subclass :class:`~wspace.nn.Encoder` and point ``_target_`` at it.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import WeightSpaceError
from ..spec import WeightSpaceSpec
from .encoder import Encoder, EquivariantEncoder

__all__ = ["encoder_class", "build_encoder", "build_equivariant", "split_config"]


def split_config(config: Mapping[str, Any], what: str = "encoder") -> tuple[str, dict[str, Any]]:
    """``(_target_, options)`` of a config mapping; :class:`WeightSpaceError` without ``_target_``."""
    from ..config import to_plain

    if not isinstance(config, Mapping) or not isinstance(config.get("_target_"), str):
        raise WeightSpaceError(f"{what} config must be a mapping with a '_target_' (a class path such as "
                               f"wspace.nn.UNF), got {to_plain(config)!r}")
    options = {k: v for k, v in to_plain(config).items() if k != "_target_"}
    return str(config["_target_"]), options


def encoder_class(target: str, base: type = Encoder, what: str = "encoder") -> type:
    """The class ``target`` names (a dotted path), checked to subclass ``base``."""
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception as e:  # hydra raises ImportError / ValueError subclasses with a long message
        raise WeightSpaceError(f"{what} _target_ '{target}' does not name an importable class "
                               f"({str(e).splitlines()[0]})") from e
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise WeightSpaceError(f"{what} _target_ '{target}' is not a {base.__module__}.{base.__qualname__} "
                               f"subclass (an encoder implements that contract)")
    return cls


def _instantiate(cls: type, options: dict[str, Any], args: tuple, extra: dict[str, Any], what: str) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    node = {"_target_": f"{cls.__module__}.{cls.__qualname__}", **options, **extra}
    try:
        return instantiate(node, *args, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, WeightSpaceError):
            raise cause from None
        if isinstance(cause, TypeError):
            raise WeightSpaceError(f"{what} {cls.__qualname__}: bad options {sorted(options)}: {cause}") from cause
        raise


def build_encoder(config: Mapping[str, Any], spec: WeightSpaceSpec | None, out_features: int) -> Encoder:
    """The :class:`Encoder` ``config`` describes, built as ``cls(spec, out_features, **options)``.

    Raises:
        WeightSpaceError: no ``_target_``, a ``_target_`` that is not an ``Encoder``
            subclass, or options the class does not take.
    """
    target, options = split_config(config)
    cls = encoder_class(target)
    return _instantiate(cls, options, (spec, int(out_features)), {}, "encoder")


def build_equivariant(config: Mapping[str, Any], spec: WeightSpaceSpec, **extra: Any
                      ) -> tuple[EquivariantEncoder, list[str]]:
    """The weight -> weight version of the encoder ``config`` describes, and the names of
    the options it dropped.

    ``_target_`` is an :class:`EquivariantEncoder` (built with all options) or an
    :class:`Encoder` whose :attr:`~Encoder.equivariant` names its counterpart (built with
    the options that are not :attr:`~Encoder.invariant_only_options`). ``extra`` (e.g.
    ``residual=True``) is passed to the constructor as well.
    """
    target, options = split_config(config)
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception:
        cls = None
    if isinstance(cls, type) and issubclass(cls, EquivariantEncoder):
        return _instantiate(cls, options, (spec,), extra, "equivariant encoder"), []
    cls = encoder_class(target)
    if cls.equivariant is None:
        have = sorted(c.__qualname__ for c in _subclasses(Encoder) if c.equivariant is not None)
        raise WeightSpaceError(f"encoder {cls.__qualname__} ({target}) has no equivariant (weight -> weight) "
                               f"version; encoders with one: {', '.join(have)}")
    keep, dropped = cls.equivariant_options(options)
    return _instantiate(cls.equivariant, keep, (spec,), extra, "equivariant encoder"), dropped


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out
