"""``wspace bench name=<benchmark> [quick=true] [args=[...]]``: run a script of ``benchmarks/``.

Benchmarks live in the source tree (``benchmarks/<name>.py``, each printing a table and
writing ``benchmarks/results/<name>.json``), not in the installed package: ``dir`` says
where they are (default: ``benchmarks`` under the working directory, else next to the
installed package when it runs from a checkout). The script runs in a fresh Python
process with ``--quick`` when ``quick=true`` and any extra ``args``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from wspace.errors import WeightSpaceError

__all__ = ["main", "benchmark_dir", "available"]


def benchmark_dir(where: str | None = None) -> Path:
    """The ``benchmarks/`` directory: ``where``, else ``./benchmarks``, else the checkout's."""
    candidates = [Path(where)] if where else [Path("benchmarks"), Path(__file__).resolve().parents[2] / "benchmarks"]
    for d in candidates:
        if d.is_dir() and any(d.glob("*.py")):
            return d
    raise WeightSpaceError("no benchmarks directory (benchmarks ship with the source tree; pass dir=<path>)",
                           file=candidates[0])


def available(d: Path) -> list[str]:
    """Benchmark names in ``d``."""
    return sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))


def main(cfg: Any) -> int:
    """Entry point of ``wspace bench`` (config ``configs/bench/bench.yaml``)."""
    d = benchmark_dir(cfg.get("dir"))
    name = str(cfg.name)
    if name not in available(d):
        raise WeightSpaceError(f"unknown benchmark '{name}' (available: {', '.join(available(d))})", file=d)
    extra: Sequence[str] = [str(a) for a in (cfg.get("args") or [])]
    cmd = [sys.executable, str(d / f"{name}.py"), *(["--quick"] if cfg.get("quick") else []), *extra]
    print(f"wspace bench: {' '.join(cmd[1:])}", flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise WeightSpaceError(f"benchmark '{name}' exited with status {rc}", file=d / f"{name}.py")
    return rc
