"""The ``wspace`` command: one Hydra app per subcommand.

``wspace <subcommand> [hydra overrides]``, e.g. ``wspace zoo build zoo=<preset> out=/tmp/z``
or ``wspace train -m trainer.max_epochs=5,10 ...``. :data:`SUBCOMMANDS` maps each
subcommand to its primary config (``configs/<config_name>.yaml``), the
``module:function`` that implements it, and a one-line help. The function receives the
composed ``DictConfig`` (without the ``hydra`` node).

The configs are the ``configs`` package installed next to ``wspace`` (same layout in
the source tree and in site-packages). They are addressed by directory rather than as
``pkg://configs`` so that a user's own ``configs/`` folder in the working directory
(on ``sys.path`` under ``python -m wspace``) cannot shadow them.

A subcommand whose implementation is not part of this version (its module does not
exist) fails with a one-line message and exit code 2, before Hydra creates anything.
"""
from __future__ import annotations

import difflib
import importlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

# name (words after `wspace`) -> (primary config, implementation "module:function", help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "quickstart": (
        "quickstart",
        "wspace.quickstart:main",
        "A few-minute CPU tour: tiny zoo, training, sampling and an audit.",
    ),
    "zoo build": (
        "zoo_build",
        "datasets_zoo.build:main",
        "Train a population of small networks and write a zoo to disk.",
    ),
    "train": ("train", "wspace.tasks.train:main", "Train a weight-space model (encoder or generator) on a zoo."),
    "sample": ("sample", "generators.sample:main", "Draw networks from a trained generator and save them."),
    "audit": ("audit", "wspace.audit.run:main", "Measure accuracy, novelty and memorization of generated networks."),
    "bench": ("bench", "wspace.bench:main", "Run a benchmark and write its results table."),
    "info": ("info", "wspace.cli:info", "Print versions, or the spec of a built-in example architecture."),
}

# Hydra flags that only print something: they work even for an unavailable subcommand.
_INFO_FLAGS = frozenset({"-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion"})
EXIT_UNAVAILABLE = 2
EXIT_USAGE = 2


class SubcommandUnavailable(Exception):
    """The implementation of a subcommand is not part of this installation."""


def config_dir() -> str:
    """Where the subcommands' Hydra configs live: the ``configs`` package beside ``wspace``."""
    sibling = Path(__file__).resolve().parent.parent / "configs"
    if (sibling / "_base.yaml").is_file():
        return str(sibling)
    return "pkg://configs"  # unusual installs (e.g. zipped): let importlib find the package


def group_root(config_name: str) -> str | None:
    """Search-path entry holding the config groups of one subcommand, if it has any.

    Each subcommand's groups live in ``configs/<config_name>/<group>/`` rather than at the
    top level, so a group of one subcommand never collides with a plain key of another:
    ``zoo=<preset>`` picks a preset for ``wspace zoo build`` while ``zoo=<dir>`` is a
    path for ``wspace train`` and ``wspace audit``.
    """
    where = config_dir()
    if where.startswith("pkg://"):
        return f"{where}.{config_name}"
    sub = Path(where) / config_name
    return sub.as_uri() if sub.is_dir() else None


def _with_group_root(config_name: str, args: Sequence[str]) -> list[str]:
    """``args`` with the subcommand's group root on Hydra's search path.

    A user's own ``hydra.searchpath=[...]`` keeps its entries (searched first) and
    gains the group root at the end, instead of replacing it.
    """
    root = group_root(config_name)
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


def _version() -> str:
    from wspace import __version__

    return __version__


def load_target(path: str) -> Callable[[Any], Any]:
    """Import ``"module:function"``.

    Raises:
        SubcommandUnavailable: the module (or a parent package) does not exist, or
            has no such function.
        ImportError: any other import failure (a bug or a missing dependency inside
            an existing module) propagates unchanged, so it is not mistaken for
            "not available".
    """
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise SubcommandUnavailable(f"module '{module_name}' does not exist") from None
        raise
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SubcommandUnavailable(f"'{module_name}' has no function '{attr}'")
    return fn


def _overview() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [
        f"wspace {_version()}: weight-space learning in PyTorch.",
        "",
        "usage: wspace <subcommand> [key=value ...] [group=option ...] [-m] [--help]",
        "       wspace --version",
        "",
        "subcommands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    lines += [
        "",
        "Each subcommand is a Hydra app: `wspace <subcommand> --help` shows its config and",
        "option groups; `-m` sweeps comma-separated values; `--cfg job` prints the config.",
    ]
    return "\n".join(lines)


def _match(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Longest registered name that prefixes ``argv`` -> (name, remaining args)."""
    for name in sorted(SUBCOMMANDS, key=lambda n: -len(n.split())):
        words = name.split()
        if list(argv[: len(words)]) == words:
            return name, list(argv[len(words) :])
    return None, list(argv)


def _usage_error(msg: str) -> int:
    print(f"wspace: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _dispatch_unknown(argv: list[str]) -> int:
    head = argv[0]
    nested = [n for n in SUBCOMMANDS if n.split()[0] == head and len(n.split()) > 1]
    if nested:  # a command family such as `wspace zoo`
        subs = ", ".join(n.split(maxsplit=1)[1] for n in nested)
        if len(argv) > 1 and argv[1] in ("-h", "--help"):
            print(f"usage: wspace {head} <{'|'.join(n.split(maxsplit=1)[1] for n in nested)}> [overrides]")
            for n in nested:
                print(f"  wspace {n:<20} {SUBCOMMANDS[n][2]}")
            return 0
        if len(argv) == 1:
            return _usage_error(f"'wspace {head}' needs a subcommand: {subs}")
        return _usage_error(f"unknown subcommand 'wspace {head} {argv[1]}' (choose from: {subs})")
    hint = difflib.get_close_matches(head, [n.split()[0] for n in SUBCOMMANDS], n=1)
    extra = f"; did you mean '{hint[0]}'?" if hint else ""
    return _usage_error(f"unknown subcommand '{head}'{extra} Run 'wspace --help' for the list.")


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


def _missing_keys(cfg: Any) -> list[str]:
    from omegaconf import OmegaConf

    return sorted(OmegaConf.missing_keys(cfg))


def _make_task(name: str, fn: Callable[[Any], Any]) -> Callable[[Any], None]:
    def task(cfg: Any) -> None:
        from wspace.errors import WeightSpaceError

        missing = _missing_keys(cfg)
        if missing:  # a clean message instead of an omegaconf traceback deep in the target
            example = " ".join(f"{k}=..." for k in missing)
            print(f"wspace {name}: error: missing required value(s): {', '.join(missing)} (add e.g. {example})",
                  file=sys.stderr)
            sys.exit(EXIT_USAGE)
        try:
            fn(cfg)
        except WeightSpaceError as e:  # the library's user-facing errors: one line, no traceback
            print(f"wspace {name}: error: {e}", file=sys.stderr)
            sys.exit(1)
        except BrokenPipeError:  # `wspace ... | head`: stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)

    task.__name__ = SUBCOMMANDS[name][0]
    return task


def run_subcommand(name: str, args: Sequence[str]) -> int:
    """Run subcommand ``name`` with Hydra command-line ``args`` (overrides and flags)."""
    config_name, target, _ = SUBCOMMANDS[name]
    info_only = any(a.split("=", 1)[0] in _INFO_FLAGS for a in args)
    try:
        fn = load_target(target)
    except SubcommandUnavailable as e:
        msg = f"wspace {name}: not available in this version of wspace ({_version()}): {e}"
        if not info_only:
            print(msg, file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"note: {msg}", file=sys.stderr)
        fn = lambda cfg: None  # noqa: E731  (never called: info flags do not run the job)

    import hydra
    from hydra.errors import HydraException

    app = hydra.main(version_base=None, config_path=config_dir(), config_name=config_name)(_make_task(name, fn))
    saved = sys.argv
    sys.argv = [f"wspace {name}", *_with_group_root(config_name, args)]  # Hydra parses sys.argv; argv[0] names the program in its messages
    try:
        app()
    except HydraException as e:  # Hydra reports run-time errors itself; this catches --help's composition errors
        print(f"wspace {name}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        sys.argv = saved
    return 0


def compose_config(name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> Any:
    """The ``DictConfig`` that ``wspace <name> *overrides`` would hand to its target.

    Useful in notebooks and tests; runs nothing and writes nothing.
    """
    from hydra import compose, initialize_config_dir, initialize_config_module

    config_name = SUBCOMMANDS[name][0]
    where = config_dir()
    if where.startswith("pkg://"):
        ctx = initialize_config_module(config_module=where[len("pkg://") :], version_base=None)
    else:
        ctx = initialize_config_dir(config_dir=where, version_base=None)
    with ctx:
        return compose(config_name, overrides=_with_group_root(config_name, overrides),
                       return_hydra_config=return_hydra_config)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wspace`` console script (and ``python -m wspace``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"wspace {_version()}")
        return 0
    name, rest = _match(argv)
    if name is None:
        if argv[0].startswith("-"):
            return _usage_error(f"unknown option '{argv[0]}'. Run 'wspace --help'.")
        return _dispatch_unknown(argv)
    return run_subcommand(name, rest)


# --------------------------------------------------------------------------- wspace info
def example_module(arch: str, width: int = 16, depth: int = 2):
    """A small built-in example architecture (``mlp``, ``cnn``, ``siren``, ``resmlp``)."""
    from torch import nn

    from wspace.modules import GlobalAvgPool, Residual, Sine

    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    if arch == "mlp":  # 2-D inputs -> 1 output, ReLU
        layers: list[nn.Module] = [nn.Linear(2, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, 1))
    if arch == "siren":  # coordinates (x, y) -> value
        layers = [nn.Linear(2, width), Sine(30.0)]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), Sine(1.0)]
        return nn.Sequential(*layers, nn.Linear(width, 1))
    if arch == "cnn":  # 1-channel images -> 10 classes
        layers = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, GlobalAvgPool(), nn.Linear(width, 10))
    if arch == "resmlp":  # residual stream of `width` features
        blocks = [Residual(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)) for _ in range(depth)]
        return nn.Sequential(nn.Linear(2, width), *blocks, nn.ReLU(), nn.Linear(width, 1))
    raise ValueError(f"unknown example architecture '{arch}' (choose from: {', '.join(EXAMPLE_ARCHS)})")


EXAMPLE_ARCHS = ("mlp", "cnn", "siren", "resmlp")


def versions() -> dict[str, str]:
    """Versions of wspace, Python and the main dependencies."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"wspace": _version(), "python": platform.python_version()}
    for dist in ("torch", "torch_geometric", "diffusers", "lightning", "hydra-core", "safetensors", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def info(cfg: Any) -> None:
    """``wspace info``: versions, or the spec of ``example_module(cfg.arch, cfg.width, cfg.depth)``."""
    if cfg.format not in ("text", "json"):
        print(f"wspace info: error: format must be 'text' or 'json', got '{cfg.format}'", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if cfg.arch is None:
        v = versions()
        if cfg.format == "json":
            print(json.dumps(v, indent=2))
        else:
            print("\n".join(f"{k:<16} {val}" for k, val in v.items()))
        return
    from wspace.spec import spec_from_module

    try:
        spec = spec_from_module(example_module(str(cfg.arch), int(cfg.width), int(cfg.depth)))
    except ValueError as e:
        print(f"wspace info: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if cfg.format == "json":
        print(spec.to_json(indent=2))
        return
    print(f"arch        {cfg.arch} (width={cfg.width}, depth={cfg.depth})")
    print(f"program     {spec.describe()}")
    print(f"params      {spec.num_params} in {len(spec.params)} tensors")
    print("groups      " + ", ".join(f"{g.id}:{g.size}{'+'.join([''] + list(g.symmetries))}" for g in spec.groups))
    print(f"fingerprint {spec.fingerprint}")
