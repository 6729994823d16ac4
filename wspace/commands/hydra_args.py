"""Hydra's command-line flags as the ``wspace`` command reads them: which take a value, which
choose the run's mode, and the reordering that lets a flag stand anywhere among the overrides."""
from __future__ import annotations

from typing import Sequence

__all__ = ["INFO_FLAGS", "VALUE_FLAGS", "INFO_TOPICS", "MODE_FLAGS", "takes_value", "split_flags", "hydra_order"]

# Hydra flags that only print something: they work even for an unavailable subcommand.
INFO_FLAGS = frozenset({"-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion"})
# Hydra's flags that take a value (the next argument, or `--flag=value`); `--info` takes one only
# from its choices. Every other argument starting with '-' is a flag on its own.
VALUE_FLAGS = frozenset({"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                         "-cd", "--config-dir", "--experimental-rerun"})
INFO_TOPICS = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})
# the flags that choose Hydra's mode (flag -> its long name): at most one of them per run
MODE_FLAGS = {"-r": "--run", "--run": "--run", "-m": "--multirun", "--multirun": "--multirun", "-c": "--cfg",
              "--cfg": "--cfg", "-i": "--info", "--info": "--info", "-sc": "--shell-completion",
              "--shell-completion": "--shell-completion"}


def takes_value(flag: str, nxt: str | None) -> bool:
    """Whether ``nxt`` (the argument after ``flag``, None at the end) is ``flag``'s value."""
    return nxt is not None and (flag in VALUE_FLAGS or (flag in ("-i", "--info") and nxt in INFO_TOPICS))


def split_flags(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``args`` -> (Hydra's flags with their values, the other arguments), each in order."""
    flags, rest = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "-":
            rest.append(a)
            i += 1
            continue
        flags.append(a)
        nxt = args[i + 1] if i + 1 < len(args) else None
        if takes_value(a, nxt):
            flags.append(nxt)
            i += 1
        i += 1
    return flags, rest


def hydra_order(args: Sequence[str]) -> list[str]:
    """``args`` with Hydra's flags (and their values) first and the overrides after them.

    Hydra reads its overrides as one run of positional arguments, so ``a=1 -m b=2`` would
    leave ``b=2`` unrecognized; here a flag may stand anywhere among the overrides
    (``wspace zoo build -m zoo=x seed=0,1``, ``... seed=0,1 --cfg job``, ``... -m a=1 --help``).
    """
    flags, rest = split_flags(args)
    return [*flags, *rest]
