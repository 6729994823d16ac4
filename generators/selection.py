"""Which checkpoints of a zoo a generator trains on (the ``data`` node of a generator config).

A generator models one architecture. A zoo of several (e.g. ``digits-tasks-multi``) needs
``data.architecture`` (a record's ``architecture`` name, a ``spec_id`` or a spec's
``describe()`` string); a selection that still mixes architectures is an error naming them
and their counts, never a silent choice. Diverged checkpoints (``metrics.diverged``, a
non-finite metric, or non-finite weights) are counted and are an error unless
``data.drop_diverged`` drops them (with a warning that gives the count). Unconverged but
finite checkpoints are kept unless ``data.min_test_acc`` filters them.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np
import torch

from wspace.errors import WeightSpaceError

__all__ = ["select_checkpoints", "diverged_records", "nonfinite_rows", "DATA_KEYS"]

# the settings of a ``data`` node: split, epochs, min_test_acc, tasks, exclude_tasks, max_models,
# architecture, drop_diverged
DATA_KEYS = ("split", "epochs", "min_test_acc", "tasks", "exclude_tasks", "max_models", "architecture",
             "drop_diverged")

_BATCH = 1024  # checkpoints per weight read of the finite check


def diverged_records(records: list[dict]) -> np.ndarray:
    """Per record: ``metrics.diverged`` is true or one of its numeric metrics is NaN / inf."""
    out = np.zeros(len(records), dtype=bool)
    for i, r in enumerate(records):
        m = r.get("metrics") or {}
        if m.get("diverged", False):
            out[i] = True
            continue
        out[i] = any(isinstance(v, float) and not math.isfinite(v) for v in m.values())
    return out


def _row_finite(z: Any, rows: np.ndarray) -> np.ndarray:
    """Per row, whether all its weights are finite (``z.weights`` of one architecture)."""
    ws = z.weights(rows)
    ok = torch.ones(len(rows), dtype=torch.bool)
    for t in ws.tensors:
        if t.is_floating_point():
            ok &= torch.isfinite(t.reshape(len(rows), -1)).all(1).cpu()
    return ok.numpy()


def nonfinite_rows(z: Any, idx: np.ndarray) -> np.ndarray:
    """Per index of ``idx`` (positions in the zoo view ``z``, one architecture): whether the
    checkpoint holds a NaN / inf weight. Reads the weights in batches; a reader that refuses
    non-finite rows (the native format does) is retried row by row in that batch only."""
    bad = np.zeros(len(idx), dtype=bool)
    for a in range(0, len(idx), _BATCH):
        rows = idx[a:a + _BATCH]
        try:
            bad[a:a + len(rows)] = ~_row_finite(z, rows)
        except WeightSpaceError as e:
            if "non-finite" not in str(e):
                raise
            for j, r in enumerate(rows.tolist()):
                try:
                    bad[a + j] = not bool(_row_finite(z, np.asarray([r], dtype=np.int64))[0])
                except WeightSpaceError as e1:
                    if "non-finite" not in str(e1):
                        raise
                    bad[a + j] = True
    return bad


def _mixed_error(view: Any, path: Any) -> WeightSpaceError:
    first = next(iter(view.architectures))
    return WeightSpaceError(
        f"the generator's training selection mixes {len(view.architectures)} architectures: "
        f"{view.describe_architectures()}; a generator models one architecture: pick one with "
        f"generator.data.architecture=<name> (e.g. generator.data.architecture={first})", file=path)


def select_checkpoints(zoo: Any, data: Mapping[str, Any], seed: int = 0) -> tuple[Any, np.ndarray]:
    """The zoo view and the sorted indices (positions in that view) of the records a generator trains on.

    ``data``: ``architecture`` (keep this architecture: a record's ``architecture`` name, a
    ``spec_id`` or a spec description), ``tasks`` (explicit training tasks; else records whose
    ``split`` equals ``split``, when the zoo has splits), ``exclude_tasks``, ``epochs`` (keep
    these epochs), ``min_test_acc`` (drop unconverged checkpoints), ``drop_diverged`` (drop
    diverged / non-finite checkpoints instead of raising), ``max_models`` (a seeded subsample).

    Raises:
        WeightSpaceError: the selection mixes architectures (naming them, their counts and
            ``generator.data.architecture``); it holds diverged or non-finite checkpoints and
            ``drop_diverged`` is false (naming the counts and the option); fewer than two
            checkpoints match (naming the zoo).
    """
    from datasets_zoo import Zoo

    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise WeightSpaceError(f"the generator's data settings lack {missing}")
    z = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    if data["architecture"] is not None:
        try:
            z = z.architecture(str(data["architecture"]))
        except WeightSpaceError as e:
            raise WeightSpaceError(f"generator.data.architecture={data['architecture']}: {e.problem}",
                                   file=z.path) from e
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
    idx = np.flatnonzero(keep)
    if idx.size and len(z.select(idx).architectures) > 1:
        raise _mixed_error(z.select(idx), z.path)
    if data["min_test_acc"] is not None:
        acc = np.array([(r.get("metrics") or {}).get("test_acc", 0.0) for r in recs], dtype=float)
        idx = idx[np.nan_to_num(acc[idx], nan=-np.inf) >= float(data["min_test_acc"])]
    drop = bool(data["drop_diverged"])
    flagged = diverged_records([recs[i] for i in idx])
    n_flagged = int(flagged.sum())
    idx = idx[~flagged]
    if data["max_models"] is not None and len(idx) > int(data["max_models"]):
        idx = np.sort(np.random.RandomState(seed).choice(idx, int(data["max_models"]), replace=False))
    bad_w = nonfinite_rows(z, idx) if len(idx) else np.zeros(0, dtype=bool)
    n_nonfinite = int(bad_w.sum())
    if n_flagged or n_nonfinite:
        counts = (f"{n_flagged} diverged (metrics.diverged or a non-finite metric) and {n_nonfinite} with "
                  f"NaN/inf weights, of {n_flagged + len(idx)} selected checkpoints")
        if not drop:
            raise WeightSpaceError(
                f"the generator's training selection holds {counts}; drop them with "
                f"generator.data.drop_diverged=true (and unconverged ones with generator.data.min_test_acc=<acc>)",
                file=z.path)
        warnings.warn(f"{z.path}: dropping {counts} (generator.data.drop_diverged=true)", stacklevel=2)
        idx = idx[~bad_w]
    if len(idx) < 2:
        raise WeightSpaceError(f"only {len(idx)} checkpoint(s) of the zoo match the training selection "
                               f"{dict(data)}", file=z.path)
    return z, idx
