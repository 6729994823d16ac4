"""Training curves of a run directory: read Lightning's CSV logs, draw ``curves.png``.

Two layouts are read (both written by ``wspace train``):

* encoders: ``<run>/logs/version_*/metrics.csv`` (one version per run or resumed run);
* generators: ``<run>/logs/<stage>/version_*/metrics.csv`` (one folder per training stage,
  e.g. ``vae`` and ``diffusion``).

Versions of one log folder are merged by step (a resumed run re-logs the steps after its
checkpoint; the later value wins). Each metric name gets one panel with its ``train`` /
``val`` / ``test`` series (logged as ``train/loss``, ``val/loss``, ...) against the
global step; a generator's panels are titled by stage. Drawn with matplotlib's Agg canvas
(no display, no pyplot state) and written atomically::

    from wspace.curves import plot_curves
    plot_curves("runs/cls")            # -> runs/cls/curves.png
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Dict, List, Tuple

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write

__all__ = ["CURVES_FILE", "find_logs", "read_curves", "plot_curves"]

#: the file name ``wspace train`` and ``wspace plot`` write in the run directory
CURVES_FILE = "curves.png"
SPLITS = ("train", "val", "test")
_NOT_METRICS = {"epoch", "step"}

# (group, metric name) -> split -> sorted [(step, value)]
Curves = Dict[Tuple[str, str], Dict[str, List[Tuple[int, float]]]]


def find_logs(run: str | os.PathLike) -> dict[str, list[Path]]:
    """The CSV logs under ``run/logs``: group (``""`` for an encoder run, else the stage) ->
    its ``metrics.csv`` files, oldest version first; groups in the order they were started."""
    logs = Path(run) / "logs"
    found: dict[str, list[Path]] = {}
    for f in logs.glob("**/version_*/metrics.csv"):
        group = f.parent.parent.relative_to(logs).as_posix()
        found.setdefault("" if group == "." else group, []).append(f)

    def version(f: Path) -> int:
        tail = f.parent.name.rpartition("_")[2]
        return int(tail) if tail.isdigit() else -1

    files = {g: sorted(fs, key=version) for g, fs in found.items()}
    return dict(sorted(files.items(), key=lambda kv: min(f.parent.stat().st_mtime for f in kv[1])))


def _split(key: str) -> tuple[str, str]:
    head, sep, tail = key.partition("/")
    return (head, tail) if sep and head in SPLITS else ("", key)


def read_curves(run: str | os.PathLike) -> Curves:
    """Every logged metric of ``run`` (see the module docstring), merged over versions.

    Raises:
        WeightSpaceError: ``run`` has no ``logs/**/version_*/metrics.csv``.
    """
    files = find_logs(run)
    if not files:
        raise WeightSpaceError("no training logs here (expected logs/version_*/metrics.csv or "
                               "logs/<stage>/version_*/metrics.csv, as wspace train writes)", file=run)
    curves: Curves = {}
    for group, paths in files.items():
        merged: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
        for path in paths:
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    try:
                        step = int(float(row.get("step") or "nan"))
                    except ValueError:
                        continue
                    for key, text in row.items():
                        if key is None or key in _NOT_METRICS or text in (None, ""):
                            continue
                        try:
                            value = float(text)
                        except ValueError:
                            continue
                        split, name = _split(key)
                        merged.setdefault((group, name), {}).setdefault(split, {})[step] = value
        for k, by_split in merged.items():
            curves[k] = {s: sorted(points.items()) for s, points in by_split.items()}
    return curves


def plot_curves(run: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Draw the curves of ``run`` into ``path`` (default ``run/curves.png``); returns the path.

    Raises:
        WeightSpaceError: no logs, or logs without any metric value.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves = read_curves(run)
    if not curves:
        raise WeightSpaceError("the training logs hold no metric values yet", file=Path(run) / "logs")
    path = Path(run) / CURVES_FILE if path is None else Path(path)
    n = len(curves)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.6 * cols, 3.3 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, ((group, name), by_split) in zip(axes, curves.items()):
        ordered = sorted(by_split.items(), key=lambda kv: SPLITS.index(kv[0]) if kv[0] in SPLITS else len(SPLITS))
        values = []
        for split, points in ordered:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            values += ys
            label = split or name
            if len(points) == 1:
                ax.plot(xs, ys, "o", label=label)
            else:
                ax.plot(xs, ys, marker="." if len(points) <= 30 else None, label=label)
        finite = [v for v in values if math.isfinite(v)]
        if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
            ax.set_yscale("log")
        ax.set_title(f"{group}: {name}" if group else name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"training curves: {Path(run).resolve().name}")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return path
