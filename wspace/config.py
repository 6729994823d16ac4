"""Config helpers shared by every layer: plain containers, the packaged Hydra configs,
and composing a subcommand's config without running it.

The configs are the ``configs`` package installed next to ``wspace`` (same layout in the
source tree and in site-packages). They are addressed by directory rather than as
``pkg://configs`` so that a user's own ``configs/`` folder in the working directory (on
``sys.path`` under ``python -m wspace``) cannot shadow them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["to_plain", "config_dir", "group_root", "with_group_root", "config_name", "compose_config",
           "group_options"]


def to_plain(x: Any) -> Any:
    """``x`` as plain Python containers: OmegaConf nodes resolved, mappings -> dict,
    tuples / lists -> list (always a new container, so callers may mutate it)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(x, (DictConfig, ListConfig)):
        return OmegaConf.to_container(x, resolve=True)
    if isinstance(x, Mapping):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    return x


def config_dir() -> str:
    """Where the subcommands' Hydra configs live: the ``configs`` package beside ``wspace``."""
    sibling = Path(__file__).resolve().parent.parent / "configs"
    if (sibling / "_base.yaml").is_file():
        return str(sibling)
    return "pkg://configs"  # unusual installs (e.g. zipped): let importlib find the package


def config_name(subcommand: str) -> str:
    """The primary config of a subcommand: ``"zoo build"`` -> ``"zoo_build"``."""
    return "_".join(subcommand.split())


def group_root(name: str) -> str | None:
    """Search-path entry holding the config groups of one subcommand's config, if any.

    Each subcommand's groups live in ``configs/<config_name>/<group>/`` rather than at the
    top level, so a group of one subcommand never collides with a plain key of another:
    ``zoo=<preset>`` picks a preset for ``wspace zoo build`` while ``zoo=<dir>`` is a
    path for ``wspace train`` and ``wspace audit``.
    """
    where = config_dir()
    if where.startswith("pkg://"):
        return f"{where}.{name}"
    sub = Path(where) / name
    return sub.as_uri() if sub.is_dir() else None


def with_group_root(name: str, args: Sequence[str]) -> list[str]:
    """``args`` with the group root of config ``name`` on Hydra's search path.

    A user's own ``hydra.searchpath=[...]`` keeps its entries (searched first) and
    gains the group root at the end, instead of replacing it.
    """
    root = group_root(name)
    if root is None:
        return list(args)
    out, merged = [], False
    for a in args:
        key, sep, value = a.partition("=")
        if sep and key == "hydra.searchpath" and value.startswith("[") and value.endswith("]"):
            inner = value[1:-1].strip()
            a, merged = f"{key}=[{inner + ',' if inner else ''}{root}]", True
        out.append(a)
    return out if merged else [f"hydra.searchpath=[{root}]", *out]


def group_options(name: str, group: str) -> list[str]:
    """The options of config group ``group`` of subcommand ``name`` (file stems, sorted)."""
    where = config_dir()
    if where.startswith("pkg://"):
        from importlib import resources

        try:
            folder = resources.files(f"configs.{config_name(name)}.{group}")
        except ModuleNotFoundError:
            return []
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    return sorted(p.stem for p in (Path(where) / config_name(name) / group).glob("*.yaml"))


def compose_config(name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> Any:
    """The ``DictConfig`` that ``wspace <name> *overrides`` would hand to its target.

    ``name`` is a subcommand (``"train"``, ``"zoo build"``). Useful in notebooks and
    tests; runs nothing and writes nothing.
    """
    from hydra import compose, initialize_config_dir, initialize_config_module

    cname = config_name(name)
    where = config_dir()
    if where.startswith("pkg://"):
        ctx = initialize_config_module(config_module=where[len("pkg://") :], version_base=None)
    else:
        ctx = initialize_config_dir(config_dir=where, version_base=None)
    with ctx:
        return compose(cname, overrides=with_group_root(cname, overrides), return_hydra_config=return_hydra_config)
