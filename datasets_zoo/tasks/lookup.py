"""Tasks by name: :func:`get_task` (parsed, canonicalized, built once and cached)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .digits import digits_source
from .inr import digits_inr
from .mnist1d import mnist1d_source
from .names import canonical_name, parse_task_name
from .types import INRTask, Task, restrict_to_classes

__all__ = ["get_task", "task_by_canonical_name"]


def get_task(name: str) -> Task | INRTask:
    """The task called ``name`` (see the module docstring for the grammar).

    Non-canonical spellings (unsorted digits, ``@flat``, ``@8``) resolve to the same
    cached object, whose ``name`` is canonical.

    Raises:
        WeightSpaceError: unknown name, listing the valid forms.
    """
    return task_by_canonical_name(canonical_name(*parse_task_name(name)))


@functools.lru_cache(maxsize=None)
def task_by_canonical_name(canonical: str) -> Task | INRTask:
    """The task of a canonical name, built on first use and cached (``cache_clear()`` rebuilds)."""
    base, classes, view = parse_task_name(canonical)
    if base == "digits-inr":
        return digits_inr(canonical, classes, int(view))
    if base == "digits":
        x, y, train_idx, test_idx = digits_source()
        sample_shape = (64,) if view == "flat" else (1, 8, 8)
    else:
        x, y, train_idx, test_idx = mnist1d_source()
        sample_shape = (40,) if view == "flat" else (1, 40)
    tr, te = restrict_to_classes(y, train_idx, classes), restrict_to_classes(y, test_idx, classes)
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))
    return Task(
        name=canonical,
        kind="classification",
        x_train=torch.from_numpy(x[tr].reshape(len(tr), *sample_shape)),
        y_train=torch.from_numpy(remap[y[tr]]),
        x_test=torch.from_numpy(x[te].reshape(len(te), *sample_shape)),
        y_test=torch.from_numpy(remap[y[te]]),
        classes=classes,
        input_shape=sample_shape,
        index_train=torch.from_numpy(tr),
        index_test=torch.from_numpy(te),
    )
