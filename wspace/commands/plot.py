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

from .hydra_args import split_flags

__all__ = ["main", "translate_args"]


def translate_args(args: Sequence[str]) -> list[str]:
    """``[<dir>, ...]`` -> ``["run=<dir>", ...]``: a lone positional argument (not an override,
    not a flag's value, and no ``run=`` given) is the run directory; the rest is kept."""
    flags, rest = split_flags(args)
    positional = [i for i, a in enumerate(rest) if "=" not in a]
    if len(positional) == 1 and not any(a.startswith("run=") for a in rest):
        rest[positional[0]] = f"run={rest[positional[0]]}"
    return [*flags, *rest]


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
