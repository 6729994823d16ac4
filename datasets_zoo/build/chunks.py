"""Chunks: the runs of one architecture trained together, and checkpoint ids."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

from ..tasks import get_task
from ..train_vectorized import OPTIMIZERS
from .architectures import architecture_config
from .networks import arch_kwargs
from .planning import Run

__all__ = ["Chunk", "plan_chunks", "checkpoint_id", "base_task"]


def checkpoint_id(name: str, run: int, epoch: int) -> str:
    """``<preset>/<run:06d>/e<epoch>``."""
    return f"{name}/{run:06d}/e{epoch}"


def base_task(name: str) -> str:
    """The pooled dataset of a class-subset task: ``digits:0-3@image`` -> ``digits@image``."""
    return re.sub(r":[0-9-]+", "", name)


@dataclass
class Chunk:
    """Runs of one architecture (``family`` with ``kwargs``) trained in one vectorized loop."""

    index: int
    kwargs: dict
    runs: list[Run]
    family: str


def plan_chunks(cfg: dict, runs: Sequence[Run], chunk_size: int) -> list[Chunk]:
    """Group runs by architecture (first-appearance order), order each group by optimizer
    (so the vectorized optimizer updates few contiguous slices), and cut it into chunks."""
    groups: dict[str, list[tuple[dict, Run]]] = {}
    for r in runs:
        task = get_task(r.task)
        arch = r.extra.get("architecture")
        acfg = architecture_config(cfg, arch)  # the preset itself unless it lists architectures
        kw = arch_kwargs(acfg, r.hparams, task)
        key = json.dumps([base_task(r.task), kw, acfg["family"], arch], sort_keys=True)
        groups.setdefault(key, []).append((kw, r))
    out: list[Chunk] = []
    for key, members in groups.items():
        family = json.loads(key)[2]
        members.sort(key=lambda kr: (OPTIMIZERS.index(kr[1].hparams.get("optimizer", "adam")), kr[1].run))
        for s in range(0, len(members), chunk_size):
            part = members[s:s + chunk_size]
            out.append(Chunk(len(out), part[0][0], [r for _, r in part], family))
    return out
