"""Behaviour of networks on a classification task, and similarity to a population.

* ``accuracy`` on the task's test set.
* ``max error IoU`` (Zeng et al. 2025): the set of misclassified test inputs of a
  model, compared with every training model's by ``|A ∩ B| / |A ∪ B|``; the novelty
  score is the maximum over training models. Two error-free models count as identical
  (IoU 1). With few errors per model this saturates: on digits most independently
  trained models share their 3-4 errors with some training model.
* ``max agreement``: fraction of *probe* inputs on which two models predict the same
  class, maximized over training models. The probe is the test set with Gaussian input
  noise (several noisy copies), where models make many more, and more varied, errors.
* ``min divergence``: mean symmetric KL divergence (``(KL(p‖q) + KL(q‖p)) / 2`` per
  probe input) of the predicted class distributions, minimized over training models.

Every "max over the population" is a chunked matrix product: intersections are
``E_q @ E_t^T`` on 0/1 error masks, agreements ``onehot_q @ onehot_t^T``, and the cross
terms of KL ``p_q @ log p_t^T`` over flattened ``[probe x classes]`` vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace
from .distances import chunk_rows

__all__ = ["Behaviour", "ProbeSet", "make_probe", "behaviour", "max_error_iou", "max_agreement", "min_divergence"]

ExcludeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ProbeSet:
    """Test inputs/labels of a classification task and a harder probe set (noisy test inputs)."""

    name: str
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_probe: torch.Tensor
    num_classes: int
    noise: float


def make_probe(task, *, size: int = 256, noise: float = 0.5, seed: int = 0) -> ProbeSet:
    """The probe set of a task: ``size`` test inputs (cycling through the test set) plus
    Gaussian noise of ``noise`` times the training inputs' standard deviation."""
    if getattr(task, "kind", None) != "classification":
        raise WeightSpaceError(f"behaviour metrics need a classification task; '{getattr(task, 'name', task)}' is "
                               f"of kind '{getattr(task, 'kind', type(task).__name__)}'")
    g = torch.Generator().manual_seed(seed)
    n = len(task.y_test)
    idx = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-size // n))])[:size]
    x = task.x_test[idx]
    x = x + noise * float(task.x_train.std()) * torch.randn(x.shape, generator=g)
    return ProbeSet(task.name, task.x_test, task.y_test, x, task.num_classes, noise)


@dataclass
class Behaviour:
    """Per network: test ``errors`` ``[B, N_test]`` bool, ``accuracy`` ``[B]``, probe
    predictions ``pred`` ``[B, N_probe]`` and log-probabilities ``logp`` ``[B, N_probe, C]``."""

    errors: torch.Tensor
    accuracy: torch.Tensor
    pred: torch.Tensor
    logp: torch.Tensor

    def __len__(self) -> int:
        return len(self.accuracy)


@torch.no_grad()
def behaviour(ws: WeightSpace, probe: ProbeSet, *, chunk: int = 256) -> Behaviour:
    """Evaluate every network on the test and probe sets (chunks of networks)."""
    if ws.spec.out_features != probe.num_classes:
        raise WeightSpaceError(f"the networks have {ws.spec.out_features} outputs but task '{probe.name}' has "
                               f"{probe.num_classes} classes")
    errs, accs, preds, logps = [], [], [], []
    for s in range(0, len(ws), chunk):
        sub = ws.map(lambda t: t[s:s + chunk].float())
        pred_test = sub(probe.x_test).argmax(-1)
        wrong = pred_test != probe.y_test.unsqueeze(0)
        errs.append(wrong)
        accs.append(1.0 - wrong.float().mean(1))
        logits = sub(probe.x_probe).float()
        bad = ~torch.isfinite(logits).all(-1, keepdim=True)
        logits = torch.where(bad, torch.zeros_like(logits), logits)  # a diverged network predicts uniformly
        preds.append(logits.argmax(-1))
        logps.append(torch.log_softmax(logits, -1))
    return Behaviour(torch.cat(errs), torch.cat(accs), torch.cat(preds), torch.cat(logps))


def _best(
    q: int, k: int, block: Callable[[slice], torch.Tensor], exclude: ExcludeFn | None, largest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best value and index over keys of a ``[rows, k]`` score computed by ``block(rows)``."""
    fill = float("-inf") if largest else float("inf")
    val = torch.empty(q, dtype=torch.float64)
    arg = torch.empty(q, dtype=torch.long)
    step = chunk_rows(k, 2_000_000)
    for s in range(0, q, step):
        rows = slice(s, min(s + step, q))
        m = block(rows)
        if exclude is not None:
            m = m.masked_fill(exclude(torch.arange(rows.start, rows.stop)), fill)
        v, a = (m.max(1) if largest else m.min(1))
        val[rows], arg[rows] = v.double(), a
    return val, arg


def max_error_iou(q: Behaviour, t: Behaviour, exclude: ExcludeFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over training models of the IoU of test-error sets: ``(value [Q], index [Q])``."""
    eq, et = q.errors.float(), t.errors.float()
    nq, nt = eq.sum(1), et.sum(1)

    def block(rows: slice) -> torch.Tensor:
        inter = eq[rows] @ et.T
        union = nq[rows, None] + nt[None, :] - inter
        return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))

    return _best(len(q), len(t), block, exclude, largest=True)


def _onehot(b: Behaviour, c: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(b.pred, c).reshape(len(b), -1).float()


def max_agreement(q: Behaviour, t: Behaviour, exclude: ExcludeFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over training models of the fraction of probe inputs with the same predicted class."""
    c = q.logp.shape[-1]
    oq, ot = _onehot(q, c), _onehot(t, c)
    n = q.pred.shape[1]
    return _best(len(q), len(t), lambda rows: (oq[rows] @ ot.T) / n, exclude, largest=True)


def min_divergence(q: Behaviour, t: Behaviour, exclude: ExcludeFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Min over training models of the mean symmetric KL divergence on the probe set (nats)."""
    n = q.logp.shape[1]
    lq, lt = q.logp.reshape(len(q), -1).float(), t.logp.reshape(len(t), -1).float()
    pq, pt = lq.exp(), lt.exp()
    sq, st = (pq * lq).sum(1), (pt * lt).sum(1)  # sum p log p (negative entropies)

    def block(rows: slice) -> torch.Tensor:
        cross = pq[rows] @ lt.T + (lq[rows] @ pt.T)  # sum p_q log p_t + sum p_t log p_q
        return ((sq[rows, None] + st[None, :] - cross) / (2 * n)).clamp_min(0.0)  # float32: ample for a score

    return _best(len(q), len(t), block, exclude, largest=False)
