"""Training and evaluating M classifiers of one spec together (one autograd call per step)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace

from .forward import train_forward
from .optimizer import VectorizedOptimizer
from .population import finite_rows, param_views
from .randomness import DropoutSampler, epoch_order

__all__ = ["ClassifierData", "evaluate_classifiers", "classifier_metrics", "train_classifiers"]


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy ``[..., C], [...] -> [...]`` (``logsumexp`` form: several
    times faster on CPU than ``F.cross_entropy`` for few classes)."""
    return logits.logsumexp(-1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)


@dataclass
class ClassifierData:
    """Pooled data of a chunk of classifiers.

    ``x_train`` ``[N, ...]`` and ``x_test`` ``[N_test, ...]`` are shared by all networks;
    ``y_train`` ``[M, N]`` / ``y_test`` ``[M, N_test]`` hold each network's label of each
    sample, ``-1`` where the sample is not part of that network's task (class-subset
    tasks pool the full dataset). ``[N]`` labels mean every network has the same task.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def labels(self, M: int) -> tuple[torch.Tensor, torch.Tensor]:
        ytr = self.y_train if self.y_train.dim() == 2 else self.y_train.expand(M, -1)
        yte = self.y_test if self.y_test.dim() == 2 else self.y_test.expand(M, -1)
        return ytr, yte


@torch.no_grad()
def evaluate_classifiers(
    ws: WeightSpace, x: torch.Tensor, y: torch.Tensor, *, sample_chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-network mean cross-entropy and accuracy ``([M], [M])`` of ``ws(x)`` against
    labels ``y`` (``[N]`` or ``[M, N]``, ``-1`` = sample not in that network's task)."""
    M, N = len(ws), x.shape[0]
    y = (y if y.dim() == 2 else y.expand(M, -1)).to(ws.device)
    loss_sum = torch.zeros(M, dtype=torch.float64, device=ws.device)
    correct = torch.zeros(M, dtype=torch.float64, device=ws.device)
    for s in range(0, N, sample_chunk):  # bounded memory for convnets: [M, chunk, C, H, W]
        logits = ws(x[s:s + sample_chunk]).float()
        yc = y[:, s:s + sample_chunk]
        valid = yc >= 0
        yc0 = yc.clamp_min(0)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yc0.reshape(-1), reduction="none").view_as(yc)
        loss_sum += torch.where(valid, ce, torch.zeros_like(ce)).sum(1).double()
        correct += ((logits.argmax(-1) == yc0) & valid).sum(1).double()
    n = (y >= 0).sum(1).clamp_min(1).double()
    return (loss_sum / n).float(), (correct / n).float()


def classifier_metrics(ws: WeightSpace, data: ClassifierData) -> dict[str, torch.Tensor]:
    """``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` per network (``[M]`` each)."""
    ytr, yte = data.labels(len(ws))
    trl, tra = evaluate_classifiers(ws, data.x_train, ytr)
    tel, tea = evaluate_classifiers(ws, data.x_test, yte)
    return {"train_loss": trl, "train_acc": tra, "test_loss": tel, "test_acc": tea}


def train_classifiers(
    init: WeightSpace,
    data: ClassifierData,
    *,
    seeds: torch.Tensor,
    optimizer: str | Sequence[str],
    lr: torch.Tensor | float,
    weight_decay: torch.Tensor | float = 0.0,
    momentum: torch.Tensor | float = 0.9,
    dropout: torch.Tensor | float = 0.0,
    epochs: int,
    batch_size: int,
    save_epochs: Sequence[int] = (),
    on_save: Callable[[int, WeightSpace, dict[str, torch.Tensor]], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> WeightSpace:
    """Train the M classifiers of ``init`` together; return the final weights.

    Each network visits its own samples (labels ``>= 0``) in its own order every epoch
    (``epoch_order`` from its seed), ``n_m // batch_size`` full batches per epoch
    (drop-last); networks with fewer batches wait (no update) while the others finish
    the epoch. A network whose loss or gradient becomes non-finite stops there (its
    last finite weights are kept) and is reported with ``diverged = True``.

    After each epoch ``e`` in ``save_epochs`` (``0`` = the initialization),
    ``on_save(e, ws, metrics)`` gets the detached weights and the metrics of
    :func:`classifier_metrics` plus ``diverged`` (``[M]`` bool). ``progress(f)`` is
    called after every step with the fraction of an epoch it represents.
    """
    M = len(init)
    dev = init.device
    seeds = seeds.to(torch.int64).to(dev)
    ytr, _ = data.labels(M)
    ytr = ytr.to(dev)
    member = ytr >= 0
    n_m = member.sum(1)
    steps_m = n_m // batch_size  # [M] full batches per epoch
    if bool((steps_m == 0).any()):
        raise WeightSpaceError(f"batch_size {batch_size} exceeds the training set of some networks ({int(n_m.min())})")
    steps = int(steps_m.max())
    x_train = data.x_train.to(dev)
    spec = init.spec
    flat = init.flatten().detach().clone().requires_grad_(True)  # one [M, D] leaf: one grad, one optimizer tensor
    to_m = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev).expand(M)  # noqa: E731
    opt = VectorizedOptimizer([flat], kind=optimizer, lr=to_m(lr), weight_decay=to_m(weight_decay),
                              momentum=to_m(momentum))
    drop = DropoutSampler(seeds, to_m(dropout))
    use_drop = drop.active
    save = set(int(e) for e in save_epochs)
    alive = torch.ones(M, dtype=torch.bool, device=dev)

    def snapshot(epoch: int) -> None:
        if on_save is not None and epoch in save:
            ws = WeightSpace.from_flat(spec, flat.detach().clone())
            metrics = classifier_metrics(ws, data)
            metrics["diverged"] = ~alive
            on_save(epoch, ws, metrics)

    snapshot(0)
    rows = torch.arange(M, device=dev)[:, None]
    for epoch in range(1, epochs + 1):
        order = epoch_order(seeds, epoch, member)
        for s in range(steps):
            idx = order[:, s * batch_size:(s + 1) * batch_size]  # [M, bs]
            active = steps_m > s
            xb = x_train.index_select(0, idx.reshape(-1)).view(*idx.shape, *x_train.shape[1:])  # [M, bs, ...]
            yb = ytr[rows, idx].clamp_min(0)  # a waiting network's batch is unused: any valid label
            tensors = param_views(spec, flat)
            drop.step = epoch * (1 << 20) + s  # (epoch, step in epoch): the same for a network alone
            logits = train_forward(spec, tensors, xb, drop if use_drop else None)
            loss = _cross_entropy(logits, yb).mean(1)
            grads = torch.autograd.grad(loss.sum(), flat)
            alive &= finite_rows(loss, grads) | ~active
            opt.step(grads, active & alive)
            if progress is not None:
                progress(1.0 / steps)
        snapshot(epoch)
    return WeightSpace.from_flat(spec, flat.detach())
