"""Generator settings: defaults read from the packaged YAML, merged strictly with a user's config.

Each generator's defaults live once, in its Hydra config ``configs/train/generator/<name>.yaml``
(the ``generator`` node, less ``_target_`` and ``name``). The CLI composes that file; Python
callers (``D2NWG.train``, ``train_d2nwg``) read the same file through
:func:`generator_defaults`, so the two can never disagree. A YAML default is also what makes
a key overridable on the command line (``generator.denoiser.steps=...``), which is why the
defaults are not kept in Python.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Mapping

from wspace.config import config_dir, packaged_config, to_plain
from wspace.errors import WeightSpaceError

__all__ = ["generator_defaults", "generator_config_file", "generator_own_settings", "merge_settings", "user_settings",
           "RESERVED_KEYS"]

# keys of a generator's config node that choose / label it rather than configure it
RESERVED_KEYS = ("_target_", "name")


def generator_config_file(name: str) -> str:
    """Where the packaged config of generator ``name`` lives (a path, or a ``pkg://`` address)."""
    where = config_dir()
    rel = f"train/generator/{name}.yaml"
    return f"{where}/{rel}" if where.startswith("pkg://") else str(Path(where) / rel)


def generator_own_settings(name: str) -> dict[str, Any]:
    """What generator ``name``'s YAML itself sets (its ``generator`` node without the reserved
    keys), before the generator it builds on (see :func:`generator_defaults`)."""
    gen = packaged_config(f"train/generator/{name}.yaml").get("generator")
    if not isinstance(gen, dict):
        raise WeightSpaceError("has no `generator:` node", file=generator_config_file(name))
    return {k: v for k, v in gen.items() if k not in RESERVED_KEYS}


def _base_generator(name: str) -> str | None:
    """The sibling generator config that ``name``'s defaults list builds on (e.g. p-diff on
    D2NWG: ``defaults: [d2nwg, _self_]``), or None."""
    for entry in packaged_config(f"train/generator/{name}.yaml").get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_":
            return entry
    return None


@functools.lru_cache(maxsize=None)
def _load_defaults(name: str) -> dict:
    own = generator_own_settings(name)
    base = _base_generator(name)
    return merge_settings(_load_defaults(base), own, name) if base else own


def generator_defaults(name: str) -> dict[str, Any]:
    """The default settings of generator ``name``: the ``generator`` node of
    ``configs/train/generator/<name>.yaml`` without ``_target_`` / ``name``, over the defaults
    of the generator its defaults list builds on, if any (a fresh copy)."""
    return copy.deepcopy(_load_defaults(name))


def user_settings(config: Any) -> dict[str, Any]:
    """``config`` (a mapping, a DictConfig or None) as a plain dict without the reserved keys."""
    plain = to_plain(config) if config is not None else {}
    if not isinstance(plain, Mapping):
        raise WeightSpaceError(f"a generator config must be a mapping, got {type(config).__name__}")
    return {k: v for k, v in plain.items() if k not in RESERVED_KEYS}


def merge_settings(base: Mapping, over: Mapping, what: str, where: str = "") -> dict:
    """``base`` updated by ``over`` recursively; a key that ``base`` lacks raises
    (``unknown <what> setting 'a.b'``), so typos never pass silently."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if k not in out:
            raise WeightSpaceError(f"unknown {what} setting '{where}{k}'; known: {sorted(out)}")
        if isinstance(out[k], dict) and v is not None:
            if not isinstance(v, Mapping):
                raise WeightSpaceError(f"{what} setting '{where}{k}' must be a mapping, got {v!r}")
            out[k] = merge_settings(out[k], v, what, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out
