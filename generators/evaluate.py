"""Evaluation of generated classifiers: zero-shot accuracy, fine-tuning curves, baselines.

Everything is vectorized over networks: a population of ``M`` classifiers for possibly
different class-subset tasks of one pooled dataset is scored or fine-tuned in one
batched loop (labels ``[M, N]`` over the pooled samples, ``-1`` outside a network's task;
the layout of :mod:`datasets_zoo.train_vectorized`).

* :func:`accuracy`: test (or train) accuracy of every network on its task.
* :func:`finetune_curve`: Adam fine-tuning of all networks at once, accuracy recorded
  after given step counts (step 0 = no training).
* :func:`best_of_n`: pick one of ``n`` generated networks per task by accuracy on a
  validation split (the task's training samples), report its test accuracy.
* :func:`retrieval_baseline`: the zoo networks of the most similar training task.
* :func:`aligned_average`: the aligned average of zoo networks (``wspace.audit.baselines``).
* :func:`steps_to_reach`: first recorded step at which a curve reaches a target.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch

from datasets_zoo.tasks import get_task
from datasets_zoo.train_vectorized import (ClassifierData, VectorizedOptimizer, epoch_order, evaluate_classifiers,
                                           train_forward)
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace

__all__ = ["pooled_data", "accuracy", "finetune_curve", "best_of_n", "retrieval_baseline", "task_similarity",
           "aligned_average", "steps_to_reach"]


def _base(name: str) -> str:
    return re.sub(r":[0-9-]+", "", name)


def pooled_data(task_names: Sequence[str]) -> ClassifierData:
    """Pooled inputs of the tasks' common dataset and ``[M, N]`` labels of each task."""
    bases = {_base(n) for n in task_names}
    if len(bases) != 1:
        raise WeightSpaceError(f"tasks must share one pooled dataset, got {sorted(bases)}")
    base = get_task(bases.pop())
    rows_tr, rows_te = [], []
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in task_names:  # one label row per network: cached per distinct task
        if name not in cache:
            t = get_task(name)
            ys = []
            for b_idx, t_idx, t_y in ((base.index_train, t.index_train, t.y_train),
                                      (base.index_test, t.index_test, t.y_test)):
                y = torch.full((len(b_idx),), -1, dtype=torch.int64)
                y[torch.searchsorted(b_idx, t_idx)] = t_y
                ys.append(y)
            cache[name] = (ys[0], ys[1])
        rows_tr.append(cache[name][0])
        rows_te.append(cache[name][1])
    return ClassifierData(base.x_train, torch.stack(rows_tr), base.x_test, torch.stack(rows_te))


@torch.no_grad()
def accuracy(ws: WeightSpace, task_names: Sequence[str] | str, split: str = "test") -> torch.Tensor:
    """``[M]`` accuracy of network ``m`` on task ``task_names[m]`` (one name: all networks)."""
    names = [task_names] * len(ws) if isinstance(task_names, str) else list(task_names)
    data = pooled_data(names)
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return evaluate_classifiers(ws, x, y)[1]


def finetune_curve(ws: WeightSpace, task_names: Sequence[str] | str, steps: Sequence[int], *, lr: float = 3e-3,
                   batch_size: int = 32, seed: int = 0, weight_decay: float = 0.0) -> dict[int, torch.Tensor]:
    """Fine-tune all networks at once with Adam (mini-batches of each network's own task) and
    return ``{step: [M] test accuracy}`` for every requested step count."""
    names = [task_names] * len(ws) if isinstance(task_names, str) else list(task_names)
    data = pooled_data(names)
    M, spec = len(ws), ws.spec
    ytr, yte = data.y_train, data.y_test
    member = ytr >= 0
    spe = int((member.sum(1) // batch_size).min())  # steps per epoch, the same for every network
    if spe < 1:
        raise WeightSpaceError(f"batch_size {batch_size} exceeds a task's training set")
    flat = ws.flatten().detach().clone().float().requires_grad_(True)
    opt = VectorizedOptimizer([flat], kind="adam", lr=lr, weight_decay=weight_decay)
    seeds = torch.arange(M, dtype=torch.int64) + 1000 * seed
    rows = torch.arange(M)[:, None]
    want = sorted(set(int(s) for s in steps))
    out: dict[int, torch.Tensor] = {}
    if 0 in want:
        out[0] = evaluate_classifiers(ws, data.x_test, yte)[1]
    order, cur_epoch = None, -1
    sizes = [p.numel for p in spec.params]
    for step in range(1, (want[-1] if want else 0) + 1):
        epoch, s = divmod(step - 1, spe)
        if epoch != cur_epoch:
            order, cur_epoch = epoch_order(seeds, epoch + 1, member), epoch
        idx = order[:, s * batch_size:(s + 1) * batch_size]
        xb = data.x_train.index_select(0, idx.reshape(-1)).view(*idx.shape, *data.x_train.shape[1:])
        yb = ytr[rows, idx]
        views = [c.view(M, *p.shape) for c, p in zip(torch.split(flat, sizes, 1), spec.params)]
        logits = train_forward(spec, views, xb)
        loss = (logits.logsumexp(-1) - logits.gather(-1, yb.unsqueeze(-1)).squeeze(-1)).mean(1)
        grads = torch.autograd.grad(loss.sum(), flat)
        opt.step(grads)
        if step in want:
            out[step] = evaluate_classifiers(WeightSpace.from_flat(spec, flat.detach()), data.x_test, yte)[1]
    return out


@torch.no_grad()
def best_of_n(ws: WeightSpace, task_names: Sequence[str], n: int) -> torch.Tensor:
    """For networks grouped per task (``len(ws) == tasks * n_per_task``, task-major), choose
    among the first ``n`` of each task the one with the best accuracy on the task's training
    samples (validation) and return the chosen networks' test accuracies ``[tasks]``."""
    names = list(task_names)
    per = len(ws) // len(names)
    if per * len(names) != len(ws) or not 1 <= n <= per:
        raise WeightSpaceError(f"best_of_n needs tasks * n_per_task networks and 1 <= n <= {per}")
    flat_names = [t for t in names for _ in range(per)]
    val = accuracy(ws, flat_names, "train").view(len(names), per)[:, :n]
    test = accuracy(ws, flat_names, "test").view(len(names), per)[:, :n]
    return test.gather(1, val.argmax(1, keepdim=True)).squeeze(1)


def task_similarity(a: str, b: str) -> float:
    """Similarity of two class-subset tasks: classes in the same output position count 1,
    shared classes in another position 0.1 (a retrieved network's output ``i`` is only
    useful if it predicts the same class)."""
    ca, cb = get_task(a).classes, get_task(b).classes
    same = sum(x == y for x, y in zip(ca, cb))
    return same + 0.1 * len(set(ca) & set(cb))


def retrieval_baseline(zoo, task: str, train_tasks: Sequence[str], k: int = 1, epoch: int | None = None
                       ) -> tuple[str, WeightSpace]:
    """(most similar training task, ``k`` of its zoo networks) for ``task``."""
    best = max(train_tasks, key=lambda t: (task_similarity(task, t), t))
    view = zoo.filter(task=best) if epoch is None else zoo.filter(task=best, epoch=epoch)
    return best, view.weights(range(min(k, len(view))))


def aligned_average(ws: WeightSpace, k: int | None = None) -> WeightSpace:
    """Aligned average of (the first ``k``, clamped to ``len(ws)``) networks of ``ws`` (B = 1):
    :func:`wspace.audit.baselines.aligned_average`."""
    from wspace.audit.baselines import aligned_average as _aligned_average

    return _aligned_average(ws, k=None if k is None else min(int(k), len(ws)))


def steps_to_reach(curve: dict[int, torch.Tensor], target: float) -> int | None:
    """First recorded step whose mean accuracy reaches ``target`` (None if never)."""
    for s in sorted(curve):
        if float(curve[s].mean()) >= target:
            return s
    return None
