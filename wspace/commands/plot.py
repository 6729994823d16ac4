"""``wspace plot <run dir>`` (or ``run=<dir>``): redraw ``curves.png`` of a ``wspace train`` run.

Config: ``configs/plot/plot.yaml`` (``run``, optional ``out``). The drawing is
:func:`wspace.curves.plot_curves`; :func:`translate_args` turns the positional form into
the Hydra override before Hydra parses the command line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from wspace.curves import plot_curves
from wspace.errors import WeightSpaceError

__all__ = ["main", "translate_args"]


def translate_args(args: Sequence[str]) -> list[str]:
    """``[<existing dir>, ...]`` -> ``["run=<dir>", ...]``: a lone positional argument that is
    an existing directory (and no ``run=`` given) is the run; everything else is unchanged."""
    args = list(args)
    positional = [i for i, a in enumerate(args) if not a.startswith("-") and "=" not in a]
    if len(positional) == 1 and not any(a.startswith("run=") for a in args) and os.path.isdir(args[positional[0]]):
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
