"""The vectorized optimizer: SGD, Adam and AdamW over stacked ``[M, ...]`` parameters,
with per-network hyperparameters."""
from __future__ import annotations

import copy
from typing import Sequence

import torch

from wspace.errors import WeightSpaceError

__all__ = ["OPTIMIZERS", "VectorizedOptimizer"]

OPTIMIZERS = ("sgd", "adam", "adamw")


class VectorizedOptimizer:
    """SGD (with momentum), Adam and AdamW over stacked ``[M, ...]`` parameters.

    Every hyperparameter is per network (``[M]`` tensors, or scalars broadcast to M);
    ``kind[m]`` picks the update of network m, so one chunk can mix optimizers (each
    contiguous run of one kind is updated in place as one slice: order networks by
    kind to keep that to a few slices). The updates follow ``torch.optim``:

    * ``sgd``: ``g += wd * p``; ``buf = momentum * buf + g`` (``buf = g`` at the first
      step); ``p -= lr * buf``.
    * ``adam``: ``g += wd * p``; moments with bias correction; ``p -= lr / bc1 * m /
      (sqrt(v) / sqrt(bc2) + eps)``.
    * ``adamw``: ``p *= 1 - lr * wd`` first, then the Adam update without ``g += wd * p``.

    ``step(grads, active)`` updates only networks with ``active[m]``; the others keep
    their parameters, moments and step count (so early stopping and uneven epochs are
    exact per network).
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        *,
        kind: str | Sequence[str],
        lr: torch.Tensor | float,
        weight_decay: torch.Tensor | float = 0.0,
        momentum: torch.Tensor | float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        M = self.params[0].shape[0]
        dev = self.params[0].device
        kinds = [kind] * M if isinstance(kind, str) else list(kind)
        if len(kinds) != M or any(k not in OPTIMIZERS for k in kinds):
            raise WeightSpaceError(f"optimizer kinds must be {M} values among {OPTIMIZERS}, got {sorted(set(kinds))}")

        def vec(v: torch.Tensor | float, name: str) -> torch.Tensor:
            t = torch.as_tensor(v, dtype=torch.float32, device=dev)
            t = t.expand(M).clone() if t.dim() == 0 else t.to(torch.float32)
            if t.shape != (M,):
                raise WeightSpaceError(f"optimizer {name} must be a scalar or [{M}], got shape {tuple(t.shape)}")
            return t

        self.lr = vec(lr, "lr")
        self.wd = vec(weight_decay, "weight_decay")
        self.momentum = vec(momentum, "momentum")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        # contiguous segments of one optimizer kind: (kind, start, end)
        self.segments: list[tuple[str, int, int]] = []
        for m, k in enumerate(kinds):
            if self.segments and self.segments[-1][0] == k:
                self.segments[-1] = (k, self.segments[-1][1], m + 1)
            else:
                self.segments.append((k, m, m + 1))
        self.t = torch.zeros(M, dtype=torch.float64, device=dev)  # per-network step count
        self.state: list[list[torch.Tensor]] = [[] for _ in self.params]
        for i, p in enumerate(self.params):
            for k, a, b in self.segments:
                n_state = 1 if k == "sgd" else 2
                self.state[i].append([torch.zeros_like(p[a:b]) for _ in range(n_state)])

    def select(self, rows: torch.Tensor, params: Sequence[torch.Tensor]) -> "VectorizedOptimizer":
        """The optimizer of a subset of the networks (``rows``), whose parameters are now
        ``params`` (the selected rows): hyperparameters, moments and step counts follow.
        Single-kind optimizers only (one contiguous segment)."""
        if len(self.segments) != 1:
            raise WeightSpaceError("select() supports optimizers of one kind only")
        new = copy.copy(self)
        new.params = list(params)
        new.lr, new.wd, new.momentum, new.t = self.lr[rows], self.wd[rows], self.momentum[rows], self.t[rows]
        new.segments = [(self.segments[0][0], 0, len(rows))]
        new.state = [[[x[rows] for x in self.state[i][0]]] for i in range(len(self.params))]
        return new

    def _col(self, v: torch.Tensor, a: int, b: int, like: torch.Tensor) -> torch.Tensor:
        return v[a:b].reshape(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor | None = None) -> None:
        """Apply one update with ``grads`` (aligned with ``params``); with ``active``
        (``[M]`` bool) only those networks move (the others keep parameters, moments
        and step count)."""
        act = None if active is None or bool(active.all()) else active
        self.t += 1.0 if act is None else act.double()
        b1, b2 = self.betas
        for s, (kind, a, b) in enumerate(self.segments):
            t = self.t[a:b]
            if act is not None:
                act_s = act[a:b]
                if not bool(act_s.any()):
                    continue
                if bool(act_s.all()):
                    act_s = None
            else:
                act_s = None
            lr = self.lr[a:b]
            wd = self.wd[a:b]
            coupled = kind != "adamw" and bool((wd != 0).any())
            decoupled = kind == "adamw" and bool((wd != 0).any())
            if kind != "sgd":
                tt = t.clamp_min(1.0)  # bias corrections in double, as torch.optim (Python floats)
                bc2_sqrt = (1.0 - b2 ** tt).sqrt().float()
                step_size = (lr.double() / (1.0 - b1 ** tt)).float()
            else:
                first = t == 1.0
            for i, (p_all, g_all) in enumerate(zip(self.params, grads)):
                p, g = p_all[a:b], g_all[a:b]
                st = self.state[i][s]
                if act_s is not None:  # keep inactive networks' parameters and moments
                    old_p = p.clone()
                    old_st = [x.clone() for x in st]
                if coupled:
                    g = g + self._col(wd, 0, b - a, p) * p
                if kind == "sgd":
                    buf = st[0]
                    mom = self._col(self.momentum, a, b, p)
                    # torch.optim.SGD: buf = g at the first step, then momentum * buf + g
                    if bool(first.any()):
                        buf.copy_(torch.where(self._col(first, 0, b - a, p), g, buf * mom + g))
                    else:
                        buf.mul_(mom).add_(g)
                    p.sub_(buf * self._col(lr, 0, b - a, p))
                else:
                    m, v = st
                    if decoupled:
                        p.mul_(1.0 - self._col(lr * wd, 0, b - a, p))
                    m.lerp_(g, 1.0 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                    denom = v.sqrt().div_(self._col(bc2_sqrt, 0, b - a, p)).add_(self.eps)
                    p.sub_(torch.div(m, denom).mul_(self._col(step_size, 0, b - a, p)))
                if act_s is not None:
                    keep = ~self._col(act_s, 0, b - a, p)
                    p.copy_(torch.where(keep, old_p, p))
                    for x, ox in zip(st, old_st):
                        x.copy_(torch.where(keep, ox, x))
