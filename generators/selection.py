"""Which checkpoints of a zoo a generator trains on (the ``data`` node of a generator config)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from wspace.errors import WeightSpaceError

__all__ = ["select_checkpoints", "DATA_KEYS"]

# the settings of a ``data`` node: split, epochs, min_test_acc, tasks, exclude_tasks, max_models
DATA_KEYS = ("split", "epochs", "min_test_acc", "tasks", "exclude_tasks", "max_models")


def select_checkpoints(zoo: Any, data: Mapping[str, Any], seed: int = 0) -> tuple[Any, np.ndarray]:
    """The opened zoo and the sorted indices of the records a generator trains on.

    ``data``: ``tasks`` (explicit training tasks; else records whose ``split`` equals
    ``split``, when the zoo has splits), ``exclude_tasks``, ``epochs`` (keep these epochs),
    ``min_test_acc``, ``max_models`` (a seeded subsample). Diverged records are dropped, and
    when the selection mixes architectures only its most common one is kept (a generator
    models one architecture).

    Raises:
        WeightSpaceError: fewer than two checkpoints match (the message names the zoo).
    """
    from datasets_zoo import Zoo

    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise WeightSpaceError(f"the generator's data settings lack {missing}")
    z = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    recs = z.records
    keep = np.ones(len(recs), dtype=bool)
    if data["tasks"] is not None:
        allowed = set(data["tasks"])
        keep &= np.array([r.get("task") in allowed for r in recs])
    elif data["split"] is not None and any("split" in r for r in recs):
        keep &= np.array([r.get("split") == data["split"] for r in recs])
    if data["exclude_tasks"]:
        banned = set(data["exclude_tasks"])
        keep &= np.array([r.get("task") not in banned for r in recs])
    if data["epochs"] is not None:
        ep = set(int(e) for e in data["epochs"])
        keep &= np.array([r.get("epoch") in ep for r in recs])
    if data["min_test_acc"] is not None:
        keep &= np.array([(r.get("metrics") or {}).get("test_acc", 0.0) >= float(data["min_test_acc"]) for r in recs])
    keep &= np.array([not (r.get("metrics") or {}).get("diverged", False) for r in recs])
    idx = np.flatnonzero(keep)
    sids = [recs[i].get("spec_id") for i in idx]
    if len(set(sids)) > 1:  # a generator models one architecture: keep the selection's most common one
        top = z.select(idx).most_common_spec_id()
        idx = np.array([i for i, s in zip(idx, sids) if s == top], dtype=np.int64)
    if data["max_models"] is not None and len(idx) > int(data["max_models"]):
        idx = np.sort(np.random.RandomState(seed).choice(idx, int(data["max_models"]), replace=False))
    if len(idx) < 2:
        raise WeightSpaceError(f"only {len(idx)} checkpoint(s) of the zoo match the training selection "
                               f"{dict(data)}", file=z.path)
    return z, idx
