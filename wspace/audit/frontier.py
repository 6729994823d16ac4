"""Accuracy versus novelty: is a generator more accurate than noise at matched novelty?

Adding noise to training checkpoints trades accuracy for distance along a curve: the
*noise frontier* (one point per noise scale: median novelty, mean accuracy). A
generated model beats it when its accuracy exceeds the frontier's, linearly
interpolated at the model's own novelty. Models outside the novelty range the noise
grid covers are not compared (reported as uncovered).
"""
from __future__ import annotations

import numpy as np

__all__ = ["noise_frontier", "compare_to_frontier"]


def noise_frontier(points: dict[float, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[float]]:
    """``{scale: (novelty [n], accuracy [n])}`` -> curve ``{"scale", "novelty", "accuracy"}`` sorted by novelty."""
    rows = []
    for s, (nov, acc) in points.items():
        nov, acc = np.asarray(nov, float), np.asarray(acc, float)
        ok = np.isfinite(nov) & np.isfinite(acc)
        if ok.any():
            rows.append((float(np.median(nov[ok])), float(np.mean(acc[ok])), float(s)))
    rows.sort()
    return {"scale": [r[2] for r in rows], "novelty": [r[0] for r in rows], "accuracy": [r[1] for r in rows]}


def compare_to_frontier(novelty: np.ndarray, accuracy: np.ndarray, curve: dict[str, list[float]]) -> dict:
    """Per-model excess accuracy over the frontier, and its summary.

    Returns ``excess`` (list, NaN where uncovered), ``covered`` (fraction of models inside
    the frontier's novelty range), ``above`` (fraction of covered models above it),
    ``mean_excess`` (over covered models) and ``better`` (``above > 0.5``, or None).
    """
    x, y = np.asarray(curve["novelty"], float), np.asarray(curve["accuracy"], float)
    nov, acc = np.asarray(novelty, float), np.asarray(accuracy, float)
    excess = np.full(nov.shape, np.nan)
    if x.size >= 2:
        # running maximum: at larger novelty the noise never needs to be less accurate than at smaller
        ymax = np.maximum.accumulate(y[::-1])[::-1]
        inside = np.isfinite(nov) & np.isfinite(acc) & (nov >= x[0]) & (nov <= x[-1])
        excess[inside] = acc[inside] - np.interp(nov[inside], x, ymax)
    cov = np.isfinite(excess)
    above = float(np.mean(excess[cov] > 0)) if cov.any() else None
    return {
        "excess": excess.tolist(),
        "covered": float(cov.mean()) if cov.size else 0.0,
        "above": above,
        "mean_excess": float(np.mean(excess[cov])) if cov.any() else None,
        "better": None if above is None else bool(above > 0.5),
    }
