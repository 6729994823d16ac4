"""Fitting M implicit neural representations together, with per-network early stopping."""
from __future__ import annotations

from typing import Callable

import torch

from wspace import functional
from wspace.space import WeightSpace

from .optimizer import VectorizedOptimizer
from .population import finite_rows, param_views

__all__ = ["psnr", "fit_inrs"]


def psnr(mse: torch.Tensor, value_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB for signals spanning ``value_range`` (targets in [-1, 1]: 2)."""
    return 10.0 * torch.log10(value_range ** 2 / mse.clamp_min(1e-20))


def fit_inrs(
    init: WeightSpace,
    coords: torch.Tensor,
    targets: torch.Tensor,
    *,
    lr: torch.Tensor | float,
    steps: int,
    stop_psnr: float | None = None,
    optimizer: str = "adam",
    weight_decay: torch.Tensor | float = 0.0,
    value_range: float = 2.0,
    progress: Callable[[int], None] | None = None,
) -> tuple[WeightSpace, dict[str, torch.Tensor]]:
    """Fit M INRs (``init``, shared ``coords [P, d]``) to ``targets [M, P, out]``,
    full batch, for at most ``steps`` steps.

    With ``stop_psnr``, a network stops (its weights freeze) at the first step where
    its PSNR reaches the threshold (a network whose loss or gradient turns non-finite
    stops too, flagged ``diverged``) and leaves the working set, so stopped networks
    cost nothing. Returns the weights and per-network metrics ``psnr`` (final, dB),
    ``mse``, ``steps`` (optimizer steps taken) and ``diverged``. ``progress(n)`` is
    called with the number of networks that just finished.
    """
    M = len(init)
    dev = init.device
    spec = init.spec
    coords = coords.to(dev)
    targets = targets.to(dev, torch.float32)
    result = init.flatten().detach().clone()  # final weights, row m = INR m
    to_m = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev).expand(M)  # noqa: E731
    # the working set: rows of the INRs still fitting (stopped ones are dropped from it, so
    # early stopping saves compute; each row's arithmetic does not depend on the others)
    rows = torch.arange(M, device=dev)
    flat = result.clone().requires_grad_(True)
    opt = VectorizedOptimizer([flat], kind=optimizer, lr=to_m(lr), weight_decay=to_m(weight_decay))
    tgt = targets
    alive = torch.ones(M, dtype=torch.bool, device=dev)
    taken = torch.zeros(M, dtype=torch.int64, device=dev)
    stop_mse = None if stop_psnr is None else value_range ** 2 / 10.0 ** (stop_psnr / 10.0)
    for _ in range(steps):
        out = functional.forward(spec, param_views(spec, flat), coords)
        mse = (out - tgt).pow(2).flatten(1).mean(1)  # [m] working rows
        active = torch.ones_like(mse, dtype=torch.bool) if stop_mse is None else mse.detach() > stop_mse
        grads = torch.autograd.grad(mse.sum(), flat)
        ok = finite_rows(mse, grads)
        alive[rows[~ok]] = False
        active &= ok
        n_act = int(active.sum())
        if n_act < len(rows):  # drop finished / diverged INRs from the working set
            result[rows] = flat.detach()
            if progress is not None:
                progress(len(rows) - n_act)
            if n_act == 0:
                rows = rows[:0]
                break
            keep = torch.nonzero(active).flatten()
            rows, tgt = rows[keep], tgt[keep]
            flat = flat.detach()[keep].requires_grad_(True)
            opt = opt.select(keep, [flat])
            grads = [g[keep] for g in grads]
        opt.step(grads)
        taken[rows] += 1
    if len(rows):
        result[rows] = flat.detach()
        if progress is not None:
            progress(len(rows))
    ws = WeightSpace.from_flat(spec, result)
    with torch.no_grad():
        mse = (ws(coords) - targets).pow(2).flatten(1).mean(1)
    return ws, {"psnr": psnr(mse, value_range), "mse": mse, "steps": taken, "diverged": ~alive}
