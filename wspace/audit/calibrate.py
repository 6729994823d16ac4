"""Thresholds that turn distances into verdicts: replica, interpolation or novel.

The yardstick is a *reference spread of independent solutions*: for each model of a
population known to be independent of the training checkpoints it is compared with,
its aligned distance to the nearest one. Two sources, in order of preference:

* ``reference``: a user-given population of independently trained models, each
  measured against the training set (exactly the statistic measured for generated
  models, so it is the null distribution of "novel");
* ``runs``: checkpoints of the training zoo measured against the checkpoints of
  *other* runs (records carry ``run``).

Without either (a single-run zoo, e.g. one trajectory of consecutive checkpoints whose
neighbours are ~1000x closer than independent solutions) novelty cannot be calibrated:
the thresholds then come from the noise baseline (source ``noise``), and a model
labelled "novel" is only known to be farther from training than that noise.

Rules (``d`` = aligned distance to the nearest training checkpoint, ``h`` = distance
to the convex hull / best segment of the nearest aligned training checkpoints):

* replica: ``d <= replica_factor * quantile(spread, q)`` (far closer than independent
  solutions ever are to each other);
* interpolation: otherwise, if ``h <= max(replica threshold, interpolation_ratio * d)``
  (lies on or near a combination of training checkpoints while far from each);
* novel: otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Thresholds", "calibrate", "uncalibrated", "label"]

LABELS = ("replica", "interpolation", "novel")


@dataclass
class Thresholds:
    """Calibrated thresholds and where they come from (all distances in weight units)."""

    source: str
    calibrated: bool
    replica: float
    interpolation_ratio: float
    replica_factor: float
    quantile: float
    spread_quantile: float
    spread_median: float
    spread_n: int
    rule: str
    note: str

    def to_dict(self) -> dict:
        return asdict(self)


def _rule(factor: float, q: float, ratio: float, base: str) -> str:
    return (f"replica if d_nearest <= {factor:g} x {base}; interpolation if not replica and "
            f"d_hull <= max(replica threshold, {ratio:g} x d_nearest); novel otherwise")


def calibrate(spread: np.ndarray, source: str, *, replica_factor: float = 0.25, quantile: float = 0.05,
              interpolation_ratio: float = 0.5) -> Thresholds:
    """Thresholds from a reference spread of independent solutions (finite values used)."""
    s = np.asarray(spread, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("empty reference spread")
    qv, med = float(np.quantile(s, quantile)), float(np.median(s))
    what = ("independently trained reference models to their nearest training checkpoint" if source == "reference"
            else "training checkpoints to their nearest checkpoint of another run")
    return Thresholds(
        source=source, calibrated=True, replica=replica_factor * qv, interpolation_ratio=interpolation_ratio,
        replica_factor=replica_factor, quantile=quantile, spread_quantile=qv, spread_median=med, spread_n=int(s.size),
        rule=_rule(replica_factor, quantile, interpolation_ratio, f"the {quantile:g}-quantile of the spread ({qv:.4g})"),
        note=f"spread = aligned distances of {s.size} {what}",
    )


def uncalibrated(noise_distance: float, scale: float, *, interpolation_ratio: float = 0.5) -> Thresholds:
    """Fallback thresholds from the noise baseline at relative ``scale`` (median distance)."""
    return Thresholds(
        source="noise", calibrated=False, replica=float(noise_distance), interpolation_ratio=interpolation_ratio,
        replica_factor=1.0, quantile=float("nan"), spread_quantile=float("nan"), spread_median=float("nan"),
        spread_n=0,
        rule=_rule(1.0, float("nan"), interpolation_ratio,
                   f"the median distance of the noise baseline at relative scale {scale:g} ({noise_distance:.4g})"),
        note=("novelty cannot be calibrated: the training zoo has a single run and no reference population of "
              "independently trained models was given, so there is no spread of independent solutions; thresholds "
              f"fall back to the noise baseline (scale {scale:g}), and 'novel' only means farther from training than "
              "that noise. Pass reference=<zoo of independently trained models> to calibrate."),
    )


def label(d_nearest: np.ndarray, d_hull: np.ndarray, th: Thresholds) -> list[str]:
    """Verdict per model (see the module doc)."""
    d = np.asarray(d_nearest, dtype=np.float64)
    h = np.asarray(d_hull, dtype=np.float64)
    rep = d <= th.replica
    interp = ~rep & (h <= np.maximum(th.replica, th.interpolation_ratio * d))
    return ["replica" if r else "interpolation" if i else "novel" for r, i in zip(rep, interp)]
