"""The ``wspace`` command: one Hydra app per subcommand.

``wspace <subcommand> [hydra overrides]``, e.g. ``wspace zoo build zoo=<preset> out=/tmp/z``
or ``wspace train -m trainer.max_epochs=5,10 ...``. :data:`SUBCOMMANDS` maps each
subcommand to its primary config (``configs/<config_name>/<config_name>.yaml``, see
:mod:`wspace.config`), the ``module:function`` that implements it, and a one-line help.
The function receives the composed ``DictConfig`` (without the ``hydra`` node).

A subcommand whose implementation is not part of this version (its module does not
exist) fails with a one-line message and exit code 2, before Hydra creates anything.
"""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Any, Callable, Sequence

from wspace.config import app_config_path, with_common
from wspace.interrupt import interruptible

from .hydra_args import INFO_FLAGS, MODE_FLAGS, hydra_order, takes_value
from .quiet import quiet_third_party

# name (words after `wspace`) -> (primary config, implementation "module:function", help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "quickstart": (
        "quickstart",
        "wspace.commands.quickstart:main",
        "A few-minute CPU tour: tiny zoo, training, sampling and an audit.",
    ),
    "zoo build": (
        "zoo_build",
        "wspace.commands.zoo_build:main",
        "Train a population of small networks and write a zoo to disk.",
    ),
    "train": ("train", "wspace.commands.train:main", "Train a weight-space model (encoder or generator) on a zoo."),
    "sample": ("sample", "wspace.commands.sample:main", "Draw networks from a trained generator and save them."),
    "audit": ("audit", "wspace.commands.audit:main", "Measure accuracy, novelty and memorization of generated networks."),
    "bench": ("bench", "wspace.commands.bench:main", "Run a benchmark and write its results table."),
    "info": ("info", "wspace.commands.info:main", "Print versions, or the spec of a built-in example architecture."),
    "plot": ("plot", "wspace.commands.plot:main", "Redraw the training curves (curves.png) of a wspace train run."),
}

EXIT_UNAVAILABLE = 2
EXIT_USAGE = 2


class SubcommandUnavailable(Exception):
    """The implementation of a subcommand is not part of this installation."""


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
            # SIGINT / SIGTERM: stop within a step, one line on how to resume, exit 130 / 143
            with interruptible(f"wspace {name}", exit_now=True):
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
    if name == "plot":  # `wspace plot <run dir>` means `wspace plot run=<dir>`
        from .plot import translate_args

        args = translate_args(args)
    info_only = any(a.split("=", 1)[0] in INFO_FLAGS for a in args)
    try:
        fn = load_target(target)
    except SubcommandUnavailable as e:
        msg = f"wspace {name}: not available in this version of wspace ({_version()}): {e}"
        if not info_only:
            print(msg, file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"note: {msg}", file=sys.stderr)
        fn = lambda cfg: None  # noqa: E731  (never called: info flags do not run the job)

    quiet_third_party()  # known-harmless third-party warnings and tips: hidden for the CLI only
    import hydra
    from hydra.errors import HydraException

    app = hydra.main(version_base=None, config_path=app_config_path(config_name), config_name=config_name)(_make_task(name, fn))
    saved = sys.argv
    ordered = hydra_order(args)
    modes = sorted({MODE_FLAGS[a] for a in ordered if a in MODE_FLAGS})
    if len(modes) > 1:  # Hydra would raise a bare ValueError with a traceback
        return _usage_error(f"use only one of {', '.join(modes)} with 'wspace {name}' (each chooses what the run does)")
    # Hydra parses sys.argv; argv[0] names the program in its messages
    sys.argv = [f"wspace {name}", *with_common(ordered)]
    try:
        app()
    except HydraException as e:  # Hydra reports run-time errors itself; this catches --help's composition errors
        print(f"wspace {name}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `wspace train --help | head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        sys.argv = saved
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wspace`` console script (and ``python -m wspace``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"wspace {_version()}")
        return 0
    lead = []  # Hydra flags written before the subcommand (`wspace -m info arch=mlp,cnn`) go after it
    while argv and argv[0] in ("-m", "--multirun", "--resolve", "-r", "--run", "--cfg", "-c", "--info", "-i"):
        lead.append(argv.pop(0))
        if takes_value(lead[-1], argv[0] if argv else None):
            lead.append(argv.pop(0))
    if lead and not argv:
        return _usage_error(f"{' '.join(lead)} needs a subcommand. Run 'wspace --help'.")
    name, rest = _match(argv)
    rest = [*lead, *rest]
    if name is None:
        if argv[0].startswith("-"):
            return _usage_error(f"unknown option '{argv[0]}'. Run 'wspace --help'.")
        return _dispatch_unknown(argv)
    return run_subcommand(name, rest)
