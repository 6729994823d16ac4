"""Thresholds that turn distances into verdicts: replica, interpolation, near-copy or novel.

The yardstick is a *reference spread of independent solutions*: for each model of a
population known to be independent of the training checkpoints it is compared with,
its aligned distance to the nearest one (and, with a task, its highest prediction
agreement with any of them). Two sources, in order of preference:

* ``reference``: a user-given population of independently trained models, each
  measured against the training set (exactly the statistic measured for generated
  models, so it is the null distribution of "novel");
* ``runs``: checkpoints of the training zoo measured against the checkpoints of
  *other* runs (records carry ``run``).

Without either (a single-run zoo, e.g. one trajectory of consecutive checkpoints whose
neighbours are ~1000x closer than independent solutions) novelty cannot be calibrated:
the audit says so and falls back to the most conservative rule (source ``noise``): a
model is "novel" only when it is farther from training than noise at the largest scale
of the baseline grid (noise that breaks the networks), and "near-copy" below that.

Rules (``d`` = aligned distance to the nearest training checkpoint, ``h`` = distance
to the convex hull / best segment of the nearest aligned training checkpoints, ``a`` =
highest probe agreement with a training model, ``acc`` = accuracy):

* replica: ``d <= replica_factor * quantile(spread, quantile)`` (far closer than
  independent solutions ever are to each other);
* interpolation: otherwise, if ``h <= max(replica threshold, interpolation_ratio * d)``
  (lies on or near a combination of training checkpoints while far from each);
* near-copy: otherwise, if ``d < quantile(spread, novel_quantile)`` (closer to a
  training model than independent solutions are, e.g. a training model plus noise) or
  ``a > max(agreement spread)`` (agrees with a training model on more inputs than any
  independent solution does; a quantile would be too tight: accurate independent models
  agree on nearly every input too). By construction at least ``1 - novel_quantile`` of
  independent solutions pass both tests;
* novel: otherwise; ``"novel, non-functional"`` when ``acc`` is below the functional
  bar (halfway from chance to the training models' median accuracy: their records'
  ``test_acc`` when a zoo carries them, else theirs on the audit's task): far from the
  zoo but without its function, not a success.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["LABELS", "Thresholds", "calibrate", "uncalibrated", "label", "functional_bar"]

LABELS = ("replica", "interpolation", "near-copy", "novel", "novel, non-functional")


@dataclass
class Thresholds:
    """Calibrated thresholds and where they come from (all distances in weight units).

    ``novel``: the distance below which a model is at most a near-copy; ``agreement``:
    the probe agreement above which it is (None without a task or an agreement spread);
    ``functional``: the accuracy below which a novel model is flagged non-functional."""

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
    novel: float = float("inf")
    novel_quantile: float = float("nan")
    agreement: float | None = None
    functional: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def functional_bar(train_accuracy: np.ndarray, num_classes: int) -> float:
    """Accuracy halfway from chance (``1 / num_classes``) to the training models' median."""
    acc = np.asarray(train_accuracy, dtype=np.float64)
    acc = acc[np.isfinite(acc)]
    chance = 1.0 / max(1, int(num_classes))
    return float(chance + 0.5 * (np.median(acc) - chance)) if acc.size else chance


def _rule(replica: str, ratio: float, novel: str, agreement: float | None, functional: float | None) -> str:
    text = (f"replica if d_nearest <= {replica}; interpolation if not replica and d_hull <= max(replica "
            f"threshold, {ratio:g} x d_nearest); near-copy if neither and d_nearest < {novel}")
    if agreement is not None:
        text += (f" or its agreement with the most similar training model > {agreement:.3f} (the highest of any "
                 "independent solution)")
    text += "; novel otherwise"
    if functional is not None:
        text += (f", flagged non-functional when accuracy < {functional:.3f} (halfway from chance to the "
                 "training models' median)")
    return text


def calibrate(spread: np.ndarray, source: str, *, replica_factor: float = 0.25, quantile: float = 0.05,
              interpolation_ratio: float = 0.5, novel_quantile: float = 0.05,
              agreement_spread: np.ndarray | None = None, functional: float | None = None) -> Thresholds:
    """Thresholds from a reference spread of independent solutions (finite values used):
    distances ``spread`` and, optionally, their highest agreements ``agreement_spread``."""
    s = np.asarray(spread, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("empty reference spread")
    if not 0.0 < novel_quantile < 0.5:
        raise ValueError(f"novel_quantile must lie in (0, 0.5), got {novel_quantile}")
    qv, med = float(np.quantile(s, quantile)), float(np.median(s))
    nv = float(np.quantile(s, novel_quantile))
    agr = None
    if agreement_spread is not None:
        a = np.asarray(agreement_spread, dtype=np.float64)
        a = a[np.isfinite(a)]
        agr = float(a.max()) if a.size else None  # agreement is confounded with accuracy: only beyond every one
    what = ("independently trained reference models to their nearest training checkpoint" if source == "reference"
            else "training checkpoints to their nearest checkpoint of another run")
    return Thresholds(
        source=source, calibrated=True, replica=replica_factor * qv, interpolation_ratio=interpolation_ratio,
        replica_factor=replica_factor, quantile=quantile, spread_quantile=qv, spread_median=med, spread_n=int(s.size),
        rule=_rule(f"{replica_factor:g} x the {quantile:g}-quantile of the spread ({qv:.4g})", interpolation_ratio,
                   f"the {novel_quantile:g}-quantile of the spread ({nv:.4g})", agr, functional),
        note=f"spread = aligned distances of {s.size} {what}", novel=nv, novel_quantile=novel_quantile,
        agreement=agr, functional=functional,
    )


def uncalibrated(noise_distance: float, scale: float, *, interpolation_ratio: float = 0.5,
                 novel_distance: float = float("inf"), novel_scale: float | None = None,
                 functional: float | None = None) -> Thresholds:
    """Fallback thresholds: replica below the median distance of the noise baseline at
    relative ``scale``; novel only beyond ``novel_distance`` (the median distance of the
    noise at the grid's largest scale ``novel_scale``; inf: never)."""
    far = ("never (no noise grid)" if not np.isfinite(novel_distance) else
           f"the median distance of noise at relative scale {novel_scale:g} ({novel_distance:.4g})")
    return Thresholds(
        source="noise", calibrated=False, replica=float(noise_distance), interpolation_ratio=interpolation_ratio,
        replica_factor=1.0, quantile=float("nan"), spread_quantile=float("nan"), spread_median=float("nan"),
        spread_n=0,
        rule=_rule(f"the median distance of the noise baseline at relative scale {scale:g} ({noise_distance:.4g})",
                   interpolation_ratio, far, None, functional),
        note=("NOVELTY IS NOT CALIBRATED: novelty cannot be calibrated, the training zoo has a single run and no "
              "reference population of independently trained models was given, so there is no spread of "
              "independent solutions. The most "
              "conservative rule applies: 'novel' only beyond noise that breaks the networks, 'near-copy' below it, "
              "so independent solutions may read as near-copies. Pass reference=<zoo of independently trained "
              "models> (or a zoo with several runs) to calibrate."),
        novel=float(novel_distance), agreement=None, functional=functional,
    )


def label(d_nearest: np.ndarray, d_hull: np.ndarray, th: Thresholds, accuracy: np.ndarray | None = None,
          agreement: np.ndarray | None = None) -> list[str]:
    """Verdict per model (see the module doc); ``accuracy`` / ``agreement`` per model when
    the audit has a task (NaN entries skip that test)."""
    d = np.asarray(d_nearest, dtype=np.float64)
    h = np.asarray(d_hull, dtype=np.float64)
    rep = d <= th.replica
    interp = ~rep & (h <= np.maximum(th.replica, th.interpolation_ratio * d))
    near = d < th.novel
    if agreement is not None and th.agreement is not None:
        near = near | (np.nan_to_num(np.asarray(agreement, dtype=np.float64), nan=-np.inf) > th.agreement)
    broken = np.zeros(d.shape, dtype=bool)
    if accuracy is not None and th.functional is not None:
        broken = np.nan_to_num(np.asarray(accuracy, dtype=np.float64), nan=np.inf) < th.functional
    out = []
    for r, i, n, b in zip(rep, interp, near, broken):
        out.append("replica" if r else "interpolation" if i else "near-copy" if n
                   else "novel, non-functional" if b else "novel")
    return out
