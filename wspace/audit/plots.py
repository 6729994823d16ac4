"""PNG plots of an audit (matplotlib, Agg backend) and the self-contained HTML report."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np


# `r` is an AuditReport (not imported: the report imports this module to save itself)
__all__ = ["write_plots", "write_html"]

_COLORS = {"generated": "tab:red", "training": "tab:gray", "average": "tab:green", "interpolation": "tab:purple",
           "gaussian": "tab:brown", "reference": "tab:olive"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Lay out, write and close ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _finite(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[np.isfinite(a)]


def _groups(r: Any) -> list[tuple[str, dict, str]]:
    """(label, metrics, color) of every plotted group, generated last (on top)."""
    out = []
    if r.train_reference is not None:
        out.append(("training (vs others)", r.train_reference, _COLORS["training"]))
    noise = [(n, b) for n, b in r.baselines.items() if b["kind"] == "noise"]
    cmap = _plt().get_cmap("Blues")
    for i, (n, b) in enumerate(noise):
        out.append((n, b["metrics"], cmap(0.35 + 0.6 * i / max(1, len(noise) - 1))))
    for n, b in r.baselines.items():
        if b["kind"] != "noise":
            out.append((n, b["metrics"], _COLORS.get(b["kind"], "black")))
    if r.reference is not None:
        out.append(("reference", r.reference, _COLORS["reference"]))
    out.append(("generated", r.metrics, _COLORS["generated"]))
    return out


def _scatter(r: Any, out: Path) -> Path | None:
    if "accuracy" not in r.metrics:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, xlabel in ((axes[0], "max_error_iou", "max IoU of test-error sets with a training model"),
                            (axes[1], "max_agreement", "max prediction agreement on the noisy probe set")):
        for name, m, c in _groups(r):
            if key in m:
                ax.scatter(m[key], m["accuracy"], s=12, alpha=0.6, color=c, label=name,
                           marker="*" if name == "generated" else "o")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("accuracy vs behaviour similarity to the most similar training model")
    return _save(fig, out / "accuracy_vs_similarity.png")


def _histograms(r: Any, out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "aligned_distance", "aligned (permutation-matched) L2 to nearest training ckpt"),
                           (axes[1], "raw_distance", "raw L2 to nearest training checkpoint (published metric)")):
        series = [("generated", r.metrics[key], _COLORS["generated"])]
        if r.train_reference is not None:
            series.append(("train-to-train (self excluded)", r.train_reference[key], _COLORS["training"]))
        if r.cross_run is not None:
            series.append(("train to other runs (spread)", r.cross_run[key], "tab:blue"))
        if r.reference is not None:
            series.append(("reference to train (spread)", r.reference[key], _COLORS["reference"]))
        vals = [_finite(v) for _, v, _ in series]
        allv = np.concatenate([v for v in vals if v.size]) if any(v.size for v in vals) else np.zeros(1)
        bins = np.linspace(0, max(float(allv.max()), 1e-12) * 1.05, 31)
        for (name, _, c), v in zip(series, vals):
            if v.size:
                ax.hist(v, bins=bins, alpha=0.5, color=c, label=f"{name} (n={v.size})", density=True)
        if key == "aligned_distance":
            ax.axvline(r.thresholds.replica, color="k", ls="--", lw=1, label="replica threshold")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("L2 distance")
        ax.legend(fontsize=7)
    return _save(fig, out / "nearest_distance_hist.png")


def _frontier(r: Any, out: Path) -> Path | None:
    fr = r.frontier.get("aligned_distance")
    if fr is None:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    curve = fr["curve"]
    ax.plot(curve["novelty"], curve["accuracy"], "-o", color="tab:blue", label="noise baseline (median, mean)")
    for x, y, s in zip(curve["novelty"], curve["accuracy"], curve["scale"]):
        ax.annotate(f"{s:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for name, m, c in _groups(r):
        if name.startswith("noise@") or "accuracy" not in m:
            continue
        ax.scatter(m["aligned_distance"], m["accuracy"], s=12, alpha=0.6, color=c, label=name,
                   marker="*" if name == "generated" else "o")
    ax.axvline(r.thresholds.replica, color="k", ls="--", lw=1, label="replica threshold")
    if np.isfinite(r.thresholds.novel):
        ax.axvline(r.thresholds.novel, color="tab:red", ls=":", lw=1, label="novel threshold")
    if r.thresholds.functional is not None:
        ax.axhline(r.thresholds.functional, color="tab:gray", ls=":", lw=1, label="functional bar")
    ax.set_xlabel("aligned distance to nearest training checkpoint (novelty)")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy-novelty frontier", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out / "frontier.png")


def write_plots(r: Any, out: Path) -> dict[str, Path]:
    """Write every applicable plot into ``out``; returns ``{name: path}``."""
    paths = {"hist": _histograms(r, out)}
    for name, fn in (("scatter", _scatter), ("frontier", _frontier)):
        p = fn(r, out)
        if p is not None:
            paths[name] = p
    return paths


def _examples_html(r: Any) -> str:
    """One generated network per verdict (the median by aligned distance) beside its nearest
    training model: distances, accuracies, agreement and error overlap."""
    m, esc = r.metrics, html.escape
    cols = [("aligned distance", "aligned_distance", "{:.4g}"), ("raw distance", "raw_distance", "{:.4g}"),
            ("hull distance", "hull_distance", "{:.4g}"), ("accuracy", "accuracy", "{:.3f}"),
            ("nearest's accuracy", "nearest_accuracy", "{:.3f}"), ("agreement", "max_agreement", "{:.3f}"),
            ("error IoU", "max_error_iou", "{:.3f}")]
    cols = [c for c in cols if c[1] in m]
    head = "".join(f"<th>{h}</th>" for h in ["verdict", "generated #", "nearest training model"] + [c[0] for c in cols])
    rows = []
    for v in dict.fromkeys(r.verdicts):  # verdicts in order of first appearance
        idx = [i for i, x in enumerate(r.verdicts) if x == v]
        d = np.asarray(m["aligned_distance"], dtype=float)[idx]
        i = idx[int(np.argsort(d)[len(d) // 2])]
        j = int(m["nearest_index"][i])
        name = r.training_ids[j] if r.training_ids is not None and j >= 0 else f"#{j}"
        cells = [esc(v), str(i), esc(str(name))]
        cells += [f.format(float(m[k][i])) if np.isfinite(float(m[k][i])) else "-" for _, k, f in cols]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<h2>One example per verdict</h2><p>The generated network with the median aligned distance "
            "among those of each verdict, beside its nearest training model.</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>")


def write_html(r: Any, out: Path, images: dict[str, Path]) -> Path:
    """One self-contained ``report.html`` (images embedded as base64)."""
    from ..io import atomic_write

    th = r.thresholds
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>wspace audit</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
        ".warn{background:#fee;padding:.5em;border:1px solid #c66}</style></head><body>",
        "<h1>Memorization audit</h1>",
        f"<p style='font-size:120%'><b>{esc(r.summary.get('answer', ''))}</b></p>",
        f"<p>{r.info.get('n_generated')} generated vs {r.info.get('n_training')} training networks "
        f"({esc(str(r.info.get('spec')))}, {r.info.get('num_params')} parameters); task: "
        f"{esc(str(r.info.get('task')))}.</p>",
        "<h2>Verdicts</h2>",
        "<p>" + ", ".join(f"{k}: {v:.1%}" for k, v in r.summary["fractions"].items()) + "</p>",
        f"<p><b>Thresholds</b> (source: {esc(th.source)}): {esc(th.rule)}. Replica threshold = {th.replica:.5g}."
        f" {esc(th.note)}</p>",
    ]
    if not th.calibrated:
        parts.append(f"<p class='warn'>{esc(th.note)}</p>")
    fr = r.summary.get("frontier")
    if fr and fr.get("above") is not None:
        parts.append(f"<p><b>Frontier:</b> {fr['covered']:.0%} of generated models lie in the noise grid's novelty "
                     f"range; {fr['above']:.0%} of those are more accurate than noise at matched aligned distance "
                     f"(mean excess accuracy {fr['mean_excess']:+.4f}).</p>")
    parts.append(_examples_html(r))
    parts.append("<h2>Summary</h2><pre>" + esc(r.table()) + "</pre>")
    for name, p in images.items():
        data = base64.b64encode(Path(p).read_bytes()).decode()
        parts.append(f"<h3>{esc(name)}</h3><img alt='{esc(name)}' style='max-width:100%' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    path = out / "report.html"
    with atomic_write(path) as f:
        f.write("\n".join(parts))
    return path
