"""Training one chunk of classifiers and appending its saved epochs to the zoo."""
from __future__ import annotations

import torch

from wspace.errors import WeightSpaceError
from wspace.families import family_spec
from wspace.space import WeightSpace

from ..format import ZooWriter
from ..tasks import get_task
from ..train_vectorized import ClassifierData, counter_bits, train_classifiers
from ..train_vectorized.randomness import STREAM_SUBSET
from .chunks import Chunk, base_task, checkpoint_id
from .networks import init_runs
from .progress import Progress

__all__ = ["train_classifier_chunk"]


_LABEL_CACHE: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _task_labels(base_name: str, task_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels of ``task_name`` over the samples of its pooled dataset (``-1``: not in the
    task), for the train and the test split."""
    key = (base_name, task_name)
    if key not in _LABEL_CACHE:
        base, task = get_task(base_name), get_task(task_name)
        rows = []
        for b_idx, t_idx, t_y in ((base.index_train, task.index_train, task.y_train),
                                  (base.index_test, task.index_test, task.y_test)):
            y = torch.full((len(b_idx),), -1, dtype=torch.int64)
            pos = torch.searchsorted(b_idx, t_idx)
            if not bool((b_idx[pos.clamp_max(len(b_idx) - 1)] == t_idx).all()):
                raise WeightSpaceError(f"task '{task_name}' is not a subset of '{base_name}'")
            y[pos] = t_y
            rows.append(y)
        _LABEL_CACHE[key] = (rows[0], rows[1])
    return _LABEL_CACHE[key]


def _subsample(y: torch.Tensor, seeds: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """Keep a per-run random ``fraction`` of each run's training samples (``-1`` the rest)."""
    if bool((fraction >= 1.0).all()):
        return y
    member = y >= 0
    keys = counter_bits(seeds, (STREAM_SUBSET,), y.shape[1])
    keys = torch.where(member, keys, keys + (1 << 33))
    rank = torch.argsort(torch.argsort(keys, dim=1, stable=True), dim=1)
    keep = rank < torch.ceil(fraction * member.sum(1)).long()[:, None]
    return torch.where(keep & member, y, torch.full_like(y, -1))


def train_classifier_chunk(cfg: dict, ch: Chunk, missing: list[int], writer: ZooWriter, device: str,
                            bar: Progress) -> None:
    """Train the classifiers of chunk ``ch`` up to the last of the ``missing`` epochs and
    append every saved epoch's checkpoints that the zoo does not hold yet."""
    runs = ch.runs
    M = len(runs)
    base_name = base_task(runs[0].task)
    base = get_task(base_name)
    spec = family_spec(ch.family, **ch.kwargs)
    hp = [r.hparams for r in runs]
    seeds = torch.tensor([r.seed for r in runs], dtype=torch.int64)
    ytr = torch.stack([_task_labels(base_name, r.task)[0] for r in runs])
    yte = torch.stack([_task_labels(base_name, r.task)[1] for r in runs])
    frac = torch.tensor([float(h.get("train_fraction", 1.0)) for h in hp])
    ytr = _subsample(ytr, seeds, frac)
    data = ClassifierData(base.x_train.to(device), ytr.to(device), base.x_test.to(device), yte.to(device))
    vec = lambda k: torch.tensor([float(h[k]) for h in hp], device=device)  # noqa: E731
    name = cfg["name"]
    epochs_run = max(missing)

    def on_save(epoch: int, ws: WeightSpace, metrics: dict[str, torch.Tensor]) -> None:
        ids = [checkpoint_id(name, r.run, epoch) for r in runs]
        rows = [i for i, rid in enumerate(ids) if rid not in writer.done_ids]
        if not rows:
            return
        m = {k: v.detach().cpu().tolist() for k, v in metrics.items()}
        records = []
        for i in rows:
            r = runs[i]
            records.append({
                "id": ids[i], "run": r.run, "seed": r.seed, "task": r.task, "epoch": epoch,
                "hparams": r.hparams, "metrics": {k: m[k][i] for k in m}, **r.extra,
            })
        sel = torch.tensor(rows)
        writer.append(ws.map(lambda t: t[sel].cpu()), records)

    train_classifiers(
        init_runs(spec, runs, device), data, seeds=seeds.to(device),
        optimizer=[h["optimizer"] for h in hp], lr=vec("lr"), weight_decay=vec("weight_decay"),
        momentum=vec("momentum"), dropout=vec("dropout"), epochs=epochs_run, batch_size=int(cfg["batch_size"]),
        save_epochs=missing, on_save=on_save, progress=lambda f: bar.update(f * M / max(epochs_run, 1)),
    )
