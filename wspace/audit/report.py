"""``AuditReport``: the result of :func:`wspace.audit.audit`, its summary and its files."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write
from .calibrate import LABELS, Thresholds

__all__ = ["AuditReport", "jsonable", "answer"]


def jsonable(x: Any) -> Any:
    """Numpy / torch values -> JSON types (non-finite floats -> None)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Thresholds):
        return jsonable(x.to_dict())
    return x


def _fractions(verdicts: list[str]) -> dict[str, float]:
    n = max(1, len(verdicts))
    return {k: sum(v == k for v in verdicts) / n for k in LABELS}


def answer(verdicts: list[str], function_measured: bool = True) -> str:
    """The audit's answer in one sentence: counts per verdict (``function_measured``: the
    audit had a task, so novel models were checked for function)."""
    n = len(verdicts)
    c = {k: sum(v == k for v in verdicts) for k in LABELS}
    novel = c["novel"] + c["novel, non-functional"]
    tail = (f": {c['novel']} functional, {c['novel, non-functional']} non-functional." if function_measured
            else " (their function was not measured: no task given).")
    return (f"Of {n} generated networks, {c['replica']} are replicas of training checkpoints, {c['interpolation']} "
            f"interpolations of them, {c['near-copy']} near-copies (closer to a training model than independent "
            f"solutions are), and {novel} novel{tail}")


def _med(a: Any) -> float | None:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None


@dataclass
class AuditReport:
    """Audit of generated networks (see :func:`wspace.audit.audit`).

    Attributes:
        verdicts: one of :data:`~wspace.audit.calibrate.LABELS` (``"replica"``,
            ``"interpolation"``, ``"near-copy"``, ``"novel"``, ``"novel, non-functional"``) per
            generated network, in order.
        metrics: per generated network (arrays of length G): ``raw_distance``,
            ``aligned_distance`` (to the nearest training checkpoint), ``nearest_index``,
            ``segment_distance``, ``hull_distance``, ``certified``, ``alignments`` and, with a
            task, ``accuracy``, ``nearest_accuracy`` (of the nearest training checkpoint),
            ``max_error_iou``, ``max_agreement``, ``min_divergence``
            (each with the index of the training model reaching it).
        thresholds: the calibrated (or fallback) thresholds and rule.
        baselines: name -> ``{"kind", params, "metrics", "verdicts"}``.
        train_reference: metrics of a training subsample vs the other checkpoints
            (self excluded; the published train-to-train reference).
        cross_run: the same against checkpoints of other runs only (the spread), or None.
        reference: metrics of the user's reference models, or None.
        frontier: accuracy-vs-novelty comparison with the noise baselines.
        summary: fractions per verdict and medians (also printed by :meth:`table`).
        info: sizes, settings, timings.
    """

    verdicts: list[str]
    metrics: dict[str, np.ndarray]
    thresholds: Thresholds
    baselines: dict[str, dict] = field(default_factory=dict)
    train_reference: dict[str, np.ndarray] | None = None
    cross_run: dict[str, np.ndarray] | None = None
    reference: dict[str, np.ndarray] | None = None
    reference_verdicts: list[str] | None = None
    frontier: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    training_ids: list | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.verdicts)

    # ------------------------------------------------------------ summaries
    def _row(self, name: str, m: dict, verdicts: list[str] | None) -> dict[str, Any]:
        row: dict[str, Any] = {"group": name, "n": int(len(m["aligned_distance"]))}
        if verdicts is not None:
            row.update(_fractions(verdicts))
        row["aligned_distance"] = _med(m["aligned_distance"])
        row["raw_distance"] = _med(m["raw_distance"])
        for k in ("accuracy", "max_error_iou", "max_agreement", "min_divergence"):
            if k in m:
                row[k] = _med(m[k]) if k != "accuracy" else float(np.mean(m[k]))
        return row

    def make_summary(self) -> dict[str, Any]:
        """Fractions per verdict and median metrics of every group."""
        rows = [self._row("generated", self.metrics, self.verdicts)]
        for n, b in self.baselines.items():
            rows.append(self._row(n, b["metrics"], b.get("verdicts")))
        if self.reference is not None:
            rows.append(self._row("reference", self.reference, self.reference_verdicts))
        if self.train_reference is not None:
            rows.append(self._row("train-to-train", self.train_reference, None))
        if self.cross_run is not None:
            rows.append(self._row("train-to-other-runs", self.cross_run, None))
        out = {"answer": answer(self.verdicts, self.thresholds.functional is not None),
               "fractions": _fractions(self.verdicts), "calibrated": self.thresholds.calibrated,
               "threshold_source": self.thresholds.source, "replica_threshold": self.thresholds.replica,
               "certified": float(np.mean(self.metrics["certified"])) if len(self) else None, "groups": rows}
        fr = self.frontier.get("aligned_distance")
        if fr is not None:
            out["frontier"] = {k: fr["generated"][k] for k in ("covered", "above", "mean_excess", "better")}
        return out

    def table(self) -> str:
        """The summary as a fixed-width text table, then the thresholds and the frontier."""
        cols = [("group", "{}"), ("n", "{:d}"), ("replica", "{:.2f}"), ("interpolation", "{:.2f}"),
                ("near-copy", "{:.2f}"), ("novel", "{:.2f}"), ("novel, non-functional", "{:.2f}"),
                ("aligned_distance", "{:.4g}"), ("raw_distance", "{:.4g}"),
                ("accuracy", "{:.4f}"), ("max_error_iou", "{:.3f}"), ("max_agreement", "{:.3f}"),
                ("min_divergence", "{:.4f}")]
        rows = self.summary.get("groups") or self.make_summary()["groups"]
        cols = [c for c in cols if any(r.get(c[0]) is not None for r in rows)]
        cells = [[c for c, _ in cols]]
        for r in rows:
            cells.append(["-" if r.get(c) is None else f.format(r[c]) for c, f in cols])
        widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
        lines = [answer(self.verdicts, self.thresholds.functional is not None)]
        lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
                  for row in cells]
        th = self.thresholds
        lines.append(f"thresholds ({th.source}{'' if th.calibrated else ', NOT calibrated'}): {th.rule}")
        if not th.calibrated:
            lines.append("note: " + th.note)
        fr = self.summary.get("frontier")
        if fr and fr.get("above") is not None:
            lines.append(f"frontier: {fr['covered']:.0%} of generated models lie within the noise grid's novelty "
                         f"range; {fr['above']:.0%} of those are more accurate than noise at matched aligned "
                         f"distance (mean excess accuracy {fr['mean_excess']:+.4f})")
        return "\n".join(lines)

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready types (per-model lists, non-finite -> null)."""
        return jsonable({
            "summary": self.summary or self.make_summary(),
            "thresholds": self.thresholds.to_dict(),
            "verdicts": self.verdicts,
            "metrics": self.metrics,
            "nearest_id": None if self.training_ids is None else
            [self.training_ids[i] if i >= 0 else None for i in np.asarray(self.metrics["nearest_index"]).tolist()],
            "baselines": {n: {k: v for k, v in b.items()} for n, b in self.baselines.items()},
            "train_reference": self.train_reference,
            "cross_run": self.cross_run,
            "reference": self.reference,
            "reference_verdicts": self.reference_verdicts,
            "frontier": self.frontier,
            "info": self.info,
        })

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``audit.json``, the PNG plots and ``report.html`` into ``out_dir``; returns the paths."""
        from .plots import write_html, write_plots

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "audit.json"}
        with atomic_write(paths["json"]) as f:
            json.dump(self.to_dict(), f, indent=1)
        paths.update(write_plots(self, out))
        paths["html"] = write_html(self, out, {k: v for k, v in paths.items() if k not in ("json",)})
        return paths
