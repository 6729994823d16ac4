"""Epoch-level regression metrics: Kendall's tau and R^2 (computed once over a whole split)."""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import kendalltau

__all__ = ["kendall_tau", "r2_score"]


def _np(x: torch.Tensor | np.ndarray | list) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def kendall_tau(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> float:
    """Kendall's tau-b between predictions and targets (scipy).

    Undefined when either side is constant (e.g. an untrained model predicting one
    value); that case returns 0.0 (no ranking information) instead of NaN, so that it
    can be monitored by early stopping.
    """
    p, t = _np(pred), _np(target)
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return 0.0
    tau = kendalltau(p, t).statistic
    return 0.0 if tau is None or math.isnan(tau) else float(tau)


def r2_score(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (as scikit-learn's ``r2_score``).

    Constant targets: 1.0 for a perfect prediction, else 0.0 (scikit-learn's convention).
    """
    p, t = _np(pred), _np(target)
    ss_res = float(((t - p) ** 2).sum())
    ss_tot = float(((t - t.mean()) ** 2).sum()) if t.size else 0.0
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot
