"""Config helpers shared by every layer: plain containers, the packaged Hydra configs,
and composing a subcommand's config without running it.

The configs are the ``configs`` package installed next to ``wspace`` (same layout in the
source tree and in site-packages): ``configs/<subcommand>/<subcommand>.yaml`` with the
subcommand's option groups beside it, and ``configs/common/_base.yaml`` shared by all. They are addressed by directory rather than as
``pkg://configs`` so that a user's own ``configs/`` folder in the working directory (on
``sys.path`` under ``python -m wspace``) cannot shadow them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["to_plain", "config_dir", "app_config_path", "with_common", "config_name", "compose_config",
           "group_options", "packaged_config"]

COMMON = "common"  # configs/common/: settings shared by every subcommand (_base.yaml)


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
    """Where the ``configs`` package lives: beside ``wspace`` (``pkg://configs`` for unusual installs)."""
    sibling = Path(__file__).resolve().parent.parent / "configs"
    if (sibling / COMMON / "_base.yaml").is_file():
        return str(sibling)
    return "pkg://configs"  # unusual installs (e.g. zipped): let importlib find the package


def config_name(subcommand: str) -> str:
    """The primary config of a subcommand: ``"zoo build"`` -> ``"zoo_build"``."""
    return "_".join(subcommand.split())


def _entry(folder: str) -> str:
    """Search-path entry of ``configs/<folder>`` (a directory, or a module for ``pkg://``)."""
    where = config_dir()
    return f"{where}.{folder}" if where.startswith("pkg://") else str(Path(where) / folder)


def app_config_path(name: str) -> str:
    """The folder of one subcommand's configs: ``configs/<config_name>/``.

    It holds the primary config ``<config_name>.yaml`` and the subcommand's option groups
    (``configs/train/encoder/``, ...). Each subcommand searches only its own folder (plus
    the shared ``configs/common/``), so its ``--help`` lists only its own groups and a
    group of one subcommand never collides with a plain key of another: ``zoo=<preset>``
    picks a preset for ``wspace zoo build`` while ``zoo=<dir>`` is a path for ``wspace train``.
    """
    return _entry(config_name(name))


def with_common(args: Sequence[str]) -> list[str]:
    """``args`` with the shared ``configs/common/`` (``_base.yaml``) on Hydra's search path.

    A user's own ``hydra.searchpath=[...]`` keeps its entries (searched first) and gains
    the shared folder at the end, instead of replacing it.
    """
    common = _entry(COMMON)
    root = common if common.startswith("pkg://") else Path(common).as_uri()
    out, merged = [], False
    for a in args:
        key, sep, value = a.partition("=")
        if sep and key == "hydra.searchpath" and value.startswith("[") and value.endswith("]"):
            inner = value[1:-1].strip()
            a, merged = f"{key}=[{inner + ',' if inner else ''}{root}]", True
        out.append(a)
    if merged:
        return out
    # placed beside the user's own overrides (the first `key=value`): Hydra's argparse reads one
    # contiguous run of overrides, so a lone override before a flag such as `-m` or `--cfg job`
    # would leave the overrides after that flag unrecognized
    at = next((i for i, a in enumerate(out) if "=" in a and not a.startswith("-")), len(out))
    return [*out[:at], f"hydra.searchpath=[{root}]", *out[at:]]


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

    where = app_config_path(name)
    if where.startswith("pkg://"):
        ctx = initialize_config_module(config_module=where[len("pkg://") :], version_base=None)
    else:
        ctx = initialize_config_dir(config_dir=where, version_base=None)
    with ctx:
        return compose(config_name(name), overrides=with_common(overrides), return_hydra_config=return_hydra_config)


def packaged_config(relpath: str) -> dict:
    """One packaged YAML file (``relpath`` under ``configs/``, e.g. ``"train/generator/d2nwg.yaml"``)
    as plain containers, read as it is (no defaults list composed): where Python code takes
    the defaults that the command line also uses, so each default lives once.

    Raises:
        WeightSpaceError: no such packaged config, or it is not a mapping.
    """
    from omegaconf import OmegaConf

    from .errors import WeightSpaceError

    where = config_dir()
    if where.startswith("pkg://"):
        from importlib import resources

        f = resources.files("configs").joinpath(relpath)
        if not f.is_file():
            raise WeightSpaceError("no such packaged config", file=f"{where}/{relpath}")
        node = OmegaConf.create(f.read_text())
        shown = f"{where}/{relpath}"
    else:
        path = Path(where) / relpath
        if not path.is_file():
            raise WeightSpaceError("no such packaged config", file=path)
        node, shown = OmegaConf.load(path), str(path)
    out = OmegaConf.to_container(node, resolve=False)
    if not isinstance(out, dict):
        raise WeightSpaceError("a config file must hold a mapping", file=shown)
    return out
