"""Config validation at the command boundary: every value a subcommand reads is checked
before any work starts, and a bad one is a :class:`~wspace.errors.WeightSpaceError` naming
the option, the value and what it must be (never a traceback from deep inside).

Three sources of truth, so that no second copy of the defaults is kept here:

* :data:`SCHEMAS`: the top-level options of each subcommand (``seed``, ``n``, ``out``,
  ``device``, ``guidance_scale``, ...), with their type, range and whether null is allowed;
* the *signatures* of the classes the config names: ``trainer.*`` against
  ``lightning.Trainer``'s type hints, ``task.*`` against the task class, ``encoder.*``
  against the encoder class (unknown keys are errors too, since they would be dropped or
  fail later);
* the packaged *defaults*: ``generator.*`` against the generator's YAML defaults,
  ``quickstart.*`` against the tour's defaults, ``zoo.*`` overrides against the preset.

Ranges that hold everywhere: floats are finite (no NaN / inf), integers are not negative,
integer sizes (``*steps``, ``*batch_size``, ``*_size``, ``n``, ``heads``, ``hidden``, ...)
are at least 1 unless their default is 0, and learning rates are positive.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from wspace.config import to_plain
from wspace.errors import WeightSpaceError

__all__ = ["Option", "SCHEMAS", "check_config", "check_value", "check_against_defaults", "check_against_signature",
           "check_device", "check_out", "check_trainer", "explicit_overrides"]

# integer settings that are sizes or counts: at least 1 (unless their default is 0)
SIZE_NAME = re.compile(r"(^|_)(n|size|batch_size|steps|heads|hidden|d_model|latent_dim|dim|shots|every|timesteps|"
                       r"per_class|runs|seeds|samples_per_task|width|subsets|variants|views|epochs|k)$")
LR_NAME = re.compile(r"(^|_)lr$")


@dataclass(frozen=True)
class Option:
    """A top-level option: ``kind`` is ``int``, ``float``, ``bool``, ``str``, ``path`` (a
    string or number naming a file), ``dir`` (an output directory: must not be an existing
    file), ``device`` (a torch device that exists here) or ``choice`` (one of ``choices``)."""

    kind: str
    minimum: float | None = None
    nullable: bool = False
    choices: tuple = ()


SEED = Option("int", minimum=0)
DEVICE = Option("device")
COMMON = {"seed": SEED, "device": DEVICE}

#: the top-level options of each subcommand (configs/<name>/<name>.yaml), checked by :func:`check_config`
SCHEMAS: dict[str, dict[str, Option]] = {
    "train": {**COMMON, "zoo": Option("path"), "out": Option("dir"),
              "resume": Option("choice", choices=(True, False, "force")), "overwrite": Option("bool")},
    "sample": {**COMMON, "checkpoint": Option("path"), "task": Option("str", nullable=True), "n": Option("int", minimum=1),
               "out": Option("dir"), "guidance_scale": Option("float", nullable=True),
               "num_inference_steps": Option("int", minimum=1, nullable=True),
               "sampler": Option("choice", choices=("ddim", "dpm", "ddpm"), nullable=True),
               "readout": Option("choice", choices=("auto", "ridge", "none"), nullable=True)},
    "zoo_build": {**COMMON, "out": Option("dir"), "size": Option("choice", choices=("small", "full")),
                  "chunk_size": Option("int", minimum=1, nullable=True), "progress": Option("bool")},
    "audit": {**COMMON, "generated": Option("path"), "zoo": Option("path"), "reference": Option("path", nullable=True),
              "task": Option("str", nullable=True), "out": Option("dir"),
              "shortlist": Option("int", minimum=1, nullable=True), "exact": Option("bool", nullable=True),
              "keep": Option("int", minimum=1, nullable=True), "max_reference": Option("int", minimum=1, nullable=True),
              "n_baseline": Option("int", minimum=1, nullable=True), "probe_size": Option("int", minimum=1, nullable=True),
              "probe_noise": Option("float", minimum=0.0, nullable=True)},
    "quickstart": {**COMMON, "out": Option("dir"), "progress": Option("bool"),
                   "resume": Option("choice", choices=(True, False, "force")), "overwrite": Option("bool")},
}


def _fail(key: str, value: Any, problem: str) -> WeightSpaceError:
    return WeightSpaceError(f"option {key}={value!r}: {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_device(value: Any, key: str = "device") -> None:
    """``value`` must be a torch device string that exists on this machine (``cuda`` needs a GPU)."""
    import torch

    try:
        dev = torch.device(str(value))
    except (RuntimeError, TypeError, ValueError) as e:
        raise _fail(key, value, f"not a torch device ({e}); use cpu, cuda, cuda:<n> or mps") from e
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _fail(key, value, "CUDA is not available on this machine (no GPU or no CUDA build of torch); "
                                    "use device=cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _fail(key, value, f"this machine has {torch.cuda.device_count()} CUDA device(s)")
        return
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise _fail(key, value, "MPS is not available on this machine; use device=cpu")
        return
    raise _fail(key, value, "unsupported device type (use cpu, cuda, cuda:<n> or mps)")


def check_out(value: Any, key: str = "out") -> None:
    """``value`` names an output directory: set, and not an existing file."""
    if value is None or str(value) in ("", "???"):
        raise _fail(key, value, "an output directory is required")
    p = Path(os.path.expanduser(str(value)))
    if p.exists() and not p.is_dir():
        raise WeightSpaceError(f"option {key}={str(value)!r}: is an existing file; it must name a directory "
                               "(new or one this command wrote)", file=p)


def check_value(key: str, value: Any, option: Option) -> None:
    """Check one top-level option (see :class:`Option`)."""
    if value is None:
        if option.nullable:
            return
        raise _fail(key, value, "must be set")
    kind = option.kind
    if kind == "int":
        if not _is_int(value):
            raise _fail(key, value, "must be an integer")
    elif kind == "float":
        if not _is_number(value):
            raise _fail(key, value, "must be a number")
        if not math.isfinite(float(value)):
            raise _fail(key, value, "must be a finite number (not NaN or infinity)")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _fail(key, value, "must be true or false")
    elif kind in ("str", "path"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value) == "":
            raise _fail(key, value, "must be a non-empty string")
    elif kind == "dir":
        check_out(value, key)
    elif kind == "device":
        check_device(value, key)
    elif kind == "choice":
        if not any(value == c and type(value) is type(c) for c in option.choices) \
                and not (isinstance(value, str) and value.lower() in [str(c).lower() for c in option.choices]):
            raise _fail(key, value, f"must be one of {', '.join(str(c).lower() for c in option.choices)}")
    if option.minimum is not None and _is_number(value) and value < option.minimum:
        raise _fail(key, value, f"must be at least {option.minimum:g}")


def _ranges(key: str, value: Any, default: Any = inspect.Parameter.empty) -> None:
    """The ranges that hold for every numeric setting (see the module docstring)."""
    name = key.rsplit(".", 1)[-1]
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(key, value, "must be a finite number (not NaN or infinity)")
    if _is_int(value):
        low = 0 if not _is_number(default) else min(0, default)
        if SIZE_NAME.search(name) and not (_is_number(default) and default <= 0):
            low = 1
        if value < low:
            raise _fail(key, value, f"must be at least {low}")
    if LR_NAME.search(name) and _is_number(value) and value <= 0:
        raise _fail(key, value, "a learning rate must be positive")
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            if isinstance(v, float) and not math.isfinite(v):
                raise _fail(f"{key}[{i}]", v, "must be a finite number (not NaN or infinity)")


def _same_kind(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace ``default`` (None if it can)."""
    if default is None or value is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if _is_int(default):
        return None if _is_int(value) else "must be an integer"
    if isinstance(default, float):
        return None if _is_number(value) else "must be a number"
    if isinstance(default, str):
        return None if isinstance(value, (str, int, float)) and not isinstance(value, bool) else "must be a string"
    if isinstance(default, (list, tuple)):
        return None if isinstance(value, (list, tuple)) else "must be a list"
    if isinstance(default, Mapping):
        return None if isinstance(value, Mapping) else "must be a mapping"
    return None


def check_against_defaults(node: Any, defaults: Mapping[str, Any], prefix: str, *,
                           skip: Iterable[str] = ("_target_", "name")) -> None:
    """Every leaf of ``node`` must have the type of its default in ``defaults`` (null
    defaults accept anything) and the common ranges. Unknown keys are left to the owner
    (generators refuse them with the list of known ones)."""
    node = to_plain(node)
    if not isinstance(node, Mapping):
        return
    skip = set(skip)
    for k, v in node.items():
        if k in skip:
            continue
        key = f"{prefix}.{k}"
        default = defaults.get(k) if isinstance(defaults, Mapping) else None
        if isinstance(v, Mapping) and isinstance(default, Mapping):
            check_against_defaults(v, default, key, skip=())
            continue
        why = _same_kind(v, default)
        if why:
            raise _fail(key, v, why)
        _ranges(key, v, default if default is not None else inspect.Parameter.empty)


# --------------------------------------------------------------------------- type hints
def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from a YAML / command line) can be an argument annotated ``hint``
    (classes a config cannot express, such as an Accelerator object, accept anything)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint) and not (isinstance(value, bool) and True not in typing.get_args(hint)
                                                       and False not in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return _is_number(value)
    if hint is str:
        return isinstance(value, str)
    base = origin or hint
    if base in (list, tuple, typing.Sequence) or (isinstance(base, type) and base.__name__ in ("Sequence",)):
        return isinstance(value, (list, tuple))
    if base in (dict, typing.Mapping) or (isinstance(base, type) and base.__name__ in ("Mapping", "MutableMapping")):
        return isinstance(value, Mapping)
    return True


def _describe(hint: Any) -> str:
    """``hint`` in words: ``Optional[int]`` -> ``an integer or null``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts: list[str] = []
        for a in typing.get_args(hint):
            d = _describe(a)
            if d not in parts:
                parts.append(d)
        return " or ".join(parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    words = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    base = origin or hint
    if base in (list, tuple) or getattr(base, "__name__", "") == "Sequence":
        return "a list"
    if base is dict or getattr(base, "__name__", "") in ("Mapping", "MutableMapping"):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def check_against_signature(node: Mapping[str, Any], fn: Callable[..., Any], prefix: str, *,
                            skip: Iterable[str] = ("_target_",), owner: str = "") -> None:
    """Every key of ``node`` must be a parameter of ``fn`` (unless it takes ``**kwargs``) and
    its value must fit the parameter's annotation and the common ranges."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations naming what is only imported for type checkers: check what resolves
        hints = {}
    params = sig.parameters
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    skip = set(skip)
    for k, v in to_plain(dict(node)).items():
        if k in skip:
            continue
        key = f"{prefix}.{k}"
        p = params.get(k)
        if p is None or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if open_kwargs:
                continue
            # parameters without a default are filled in by the library (spec, class count, ...)
            known = sorted(n for n, q in params.items() if n != "self" and q.default is not q.empty
                           and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD))
            raise WeightSpaceError(f"option {key}: {owner or getattr(fn, '__qualname__', fn)} has no option "
                                   f"'{k}' (it would be ignored); known: {', '.join(known)}")
        hint = hints.get(k, inspect.Parameter.empty)
        if v is not None and not _matches(v, hint):
            raise _fail(key, v, f"must be {_describe(hint)}")
        _ranges(key, v, p.default)


def check_trainer(node: Any, prefix: str = "trainer") -> None:
    """``trainer.*``: keyword arguments of ``lightning.Trainer`` with values its type hints
    allow (integers from -1: Lightning's "no limit")."""
    import lightning as L

    node = to_plain(node) or {}
    if not isinstance(node, Mapping):
        raise _fail(prefix, node, "must be a mapping of lightning.Trainer arguments")
    try:
        hints = typing.get_type_hints(L.Trainer.__init__)
    except Exception:
        hints = {}
    params = inspect.signature(L.Trainer.__init__).parameters
    for k, v in node.items():
        key = f"{prefix}.{k}"
        if k not in params or k == "self":
            raise WeightSpaceError(f"option {key}: lightning.Trainer has no argument '{k}'")
        hint = hints.get(k, inspect.Parameter.empty)
        if v is not None and not _matches(v, hint):
            raise _fail(key, v, f"must be {_describe(hint)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise _fail(key, v, "must be a finite number (not NaN or infinity)")
        if _is_int(v) and v < -1:
            raise _fail(key, v, "must be at least -1")
        if _is_int(v) and k in ("log_every_n_steps", "accumulate_grad_batches", "check_val_every_n_epoch") and v < 1:
            raise _fail(key, v, "must be at least 1")


def explicit_overrides(cfg: Any, node: str) -> dict[str, Any]:
    """The values under ``node`` that the command line set explicitly (``zoo.epochs=3``,
    ``+zoo.x=1``), as a nested dict of their composed values; empty outside a Hydra run."""
    from omegaconf import OmegaConf

    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return {}
        given = list(HydraConfig.get().overrides.task)
    except Exception:  # no Hydra run (a Python caller): nothing was given on a command line
        return {}
    out: dict[str, Any] = {}
    for text in given:
        key = text.split("=", 1)[0].lstrip("+~")
        if "=" not in text or text.startswith("~") or not key.startswith(node + "."):
            continue
        value = OmegaConf.select(cfg, key, default=None) if OmegaConf.is_config(cfg) else None
        parts = key.split(".")[1:]
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = to_plain(value)
    return out


def check_config(subcommand: str, cfg: Any) -> None:
    """Check the top-level options of ``subcommand`` (:data:`SCHEMAS`) in ``cfg``; keys the
    schema does not list are left to the subcommand's own checks."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    for key, option in SCHEMAS.get(subcommand, {}).items():
        try:
            value = get(key, None)
        except Exception:  # an unresolvable interpolation or a missing mandatory value
            value = None
        if value is None and key not in _present(cfg):
            continue  # not in this config (a Python caller's minimal dict): the subcommand's default applies
        value = to_plain(value)
        if value == "???":
            raise _fail(key, value, "is required")
        check_value(key, value, option)


def _present(cfg: Any) -> set[str]:
    try:
        return set(cfg.keys())
    except Exception:
        return set()
