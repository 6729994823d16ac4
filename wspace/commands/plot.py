"""``wspace plot <run dir>`` (or ``run=<dir>``): redraw ``curves.png`` of a ``wspace train`` run.

Config: ``configs/plot/plot.yaml`` (``run``, optional ``out``). The drawing is
:func:`wspace.curves.plot_curves`; :func:`translate_args` turns the positional form into
the Hydra override before Hydra parses the command line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from wspace.curves import plot_curves
from wspace.errors import WeightSpaceError

__all__ = ["main", "translate_args"]


# Hydra flags whose next argument is their value, not the run directory
_FLAG_VALUES = frozenset({"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                          "-cd", "--config-dir", "--experimental-rerun", "-i", "--info"})


def translate_args(args: Sequence[str]) -> list[str]:
    """``[<dir>, ...]`` -> ``["run=<dir>", ...]``: a lone positional argument (not an override,
    not a flag's value, and no ``run=`` given) is the run directory; everything else is unchanged."""
    args = list(args)
    positional = [i for i, a in enumerate(args) if not a.startswith("-") and "=" not in a
                  and not (i > 0 and args[i - 1] in _FLAG_VALUES)]
    if len(positional) == 1 and not any(a.startswith("run=") for a in args):
        args[positional[0]] = f"run={args[positional[0]]}"
    return args


def main(cfg: Any) -> Path:
    """Draw the curves of ``cfg.run`` into ``cfg.out`` (default ``<run>/curves.png``); returns the path."""
    run = cfg.get("run")
    if run in (None, "", "???"):
        raise WeightSpaceError("which run? wspace plot <run dir> (or run=<dir>)")
    if not Path(str(run)).is_dir():
        raise WeightSpaceError("not a directory (pass the out= of a wspace train run)", file=str(run))
    path = plot_curves(str(run), cfg.get("out"))
    print(f"wrote {path}")
    return path
