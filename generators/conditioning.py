"""Dataset conditioning: describe a task by a few labelled samples per class.

A task's condition is ``shots`` samples of each class, **in class order** (row ``i``
holds samples of the class that output unit ``i`` must predict):
``[B, K, S, *input_shape]``. :class:`SetEncoder` embeds each sample, averages within a
class (a DeepSets sum, permutation-invariant over shots), adds an embedding of the
class's output slot and lets the ``K`` class tokens attend to each other (a class's
weights depend on the classes it competes with). The result is ``K`` condition tokens
plus a pooled task vector. Nothing in it names the class: a new task is described by
its data alone.

:func:`contrastive_loss` (CLIP's symmetric cross-entropy) pre-aligns the pooled task
vector with a projection of the weight latents (D2NWG), optionally.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wspace.errors import WeightSpaceError

__all__ = ["SetEncoder", "ShotSampler", "contrastive_loss", "task_condition"]


class SetEncoder(nn.Module):
    """``[B, K, S, *input]`` class-ordered shots -> (tokens ``[B, K, d]``, pooled ``[B, d]``)."""

    def __init__(self, in_features: int, num_classes: int, d_model: int = 128, hidden: int = 128, depth: int = 1,
                 heads: int = 4):
        super().__init__()
        self.config = dict(in_features=in_features, num_classes=num_classes, d_model=d_model, hidden=hidden,
                           depth=depth, heads=heads)
        self.in_features, self.num_classes = in_features, num_classes
        self.phi = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.rho = nn.Linear(hidden, d_model)
        self.slot = nn.Parameter(torch.randn(num_classes, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.mix = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False) if depth > 0 else nn.Identity()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, shots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, K, S = shots.shape[:3]
        x = shots.reshape(B, K, S, -1)
        if K != self.num_classes or x.shape[-1] != self.in_features:
            raise WeightSpaceError(f"the condition has {K} classes of {x.shape[-1]} input values; this generator "
                                   f"needs {self.num_classes} classes of {self.in_features} values")
        h = self.rho(self.phi(x).mean(2)) + self.slot  # [B, K, d]
        h = self.norm(self.mix(h))
        return h, h.mean(1)


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """CLIP symmetric cross-entropy between paired embeddings ``a[i] <-> b[i]`` ``[B, d]``."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class ShotSampler:
    """Draws class-ordered shots for many tasks at once.

    ``pools`` ``[n_tasks, K, P, *input]`` holds up to ``P`` training samples per class of
    every task (rows in class order); ``draw(task_ids, shots)`` gives ``[B, K, shots,
    *input]`` with samples drawn without replacement per class (one gather).
    """

    def __init__(self, pools: torch.Tensor, counts: torch.Tensor):
        self.pools, self.counts = pools, counts  # counts [n_tasks, K]: valid samples per pool row

    @classmethod
    def from_tasks(cls, tasks: list, max_per_class: int = 64, seed: int = 0) -> "ShotSampler":
        g = torch.Generator().manual_seed(seed)
        pools, counts = [], []
        for t in tasks:
            x, y = t.x_train, t.y_train
            rows, cnt = [], []
            for c in range(t.num_classes):  # classes of one task (K <= 10), not samples
                idx = torch.nonzero(y == c).flatten()
                idx = idx[torch.randperm(len(idx), generator=g)[:max_per_class]]
                if len(idx) == 0:
                    raise WeightSpaceError(f"task '{t.name}' has no training sample of class {c}")
                cnt.append(len(idx))
                pad = idx[torch.arange(max_per_class) % len(idx)]
                rows.append(x[pad])
            pools.append(torch.stack(rows))
            counts.append(cnt)
        return cls(torch.stack(pools), torch.tensor(counts))

    def draw(self, task_ids: torch.Tensor, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
        B, K, P = len(task_ids), self.pools.shape[1], self.pools.shape[2]
        u = torch.rand(B, K, P, generator=generator)
        valid = torch.arange(P)[None, None, :] < self.counts[task_ids][:, :, None]
        u = torch.where(valid, u, u + 2.0)  # padding never drawn before a real sample
        pick = u.argsort(-1)[:, :, :shots]  # random subset per class
        pool = self.pools[task_ids]  # [B, K, P, ...]
        view = pick.reshape(B, K, shots, *([1] * (pool.dim() - 3))).expand(B, K, shots, *pool.shape[3:])
        return pool.gather(2, view)


def task_condition(task, n: int, shots: int, num_classes: int, generator: torch.Generator | None = None,
                   max_per_class: int = 64) -> torch.Tensor:
    """``[n, K, shots, *input]`` class-ordered shots of ``task`` (a :class:`~datasets_zoo.Task`),
    one independent draw per network; raises :class:`WeightSpaceError` on a class-count mismatch."""
    if getattr(task, "kind", "classification") != "classification":
        raise WeightSpaceError(f"dataset conditioning needs a classification task, got '{task.name}' ({task.kind})")
    if task.num_classes != num_classes:
        raise WeightSpaceError(f"task '{task.name}' has {task.num_classes} classes but the generator makes networks "
                               f"with {num_classes} outputs (one per class); pick a {num_classes}-class task")
    sampler = ShotSampler.from_tasks([task], max_per_class=max_per_class, seed=0)
    if shots > int(sampler.counts.min()):
        shots = int(sampler.counts.min())
    return sampler.draw(torch.zeros(n, dtype=torch.long), max(1, shots), generator)


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding of (float) timesteps ``[B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], -1)
