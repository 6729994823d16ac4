"""``audit(generated, training, task=...)``: memorization audit of generated networks.

For every generated network: the raw and permutation-aligned distance to its nearest
training checkpoint, the distance to the convex hull / best segment of its nearest
aligned checkpoints, and (with a classification task) its accuracy and behaviour
similarity to the most similar training model (max error IoU, max probe agreement,
min probe divergence). The same is measured for trivial baselines (noise at a grid of
scales, aligned averages, a per-parameter Gaussian, aligned interpolations), for a
subsample of the training checkpoints against the others (the published
train-to-train reference) and for a reference spread of independent solutions that
calibrates the verdicts (see :mod:`.calibrate`).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import WeightSpaceError
from ..space import WeightSpace
from ..symmetry import canonical_frame, canonical_scales, canonicalize_scales, from_canonical, scale_neurons
from . import behaviour as bh
from .calibrate import Thresholds, calibrate, functional_bar, label, uncalibrated
from .distances import nearest_raw
from .frontier import compare_to_frontier, noise_frontier
from .geometry import gram, hull_distance, segment_distance
from .report import AuditReport
from .search import AlignedIndex

__all__ = ["audit", "as_population"]


def as_population(x: Any, what: str) -> tuple[WeightSpace, list[dict] | None]:
    """A WeightSpace or a Zoo -> ``(weights, records or None)``."""
    if isinstance(x, WeightSpace):
        if len(x) == 0:
            raise WeightSpaceError(f"the {what} set is empty: an audit needs at least one {what} network")
        return x.detach().to("cpu"), None
    if hasattr(x, "weights") and hasattr(x, "records"):  # datasets_zoo.Zoo (not imported: no dependency)
        if len(x) == 0:
            raise WeightSpaceError(f"the {what} zoo is empty", file=getattr(x, "path", None))
        return x.weights().to("cpu"), x.records
    raise WeightSpaceError(f"the {what} networks must be a WeightSpace or a Zoo, got {type(x).__name__}")


def _check_spec(ws: WeightSpace, train: WeightSpace, what: str) -> None:
    if not ws.spec.same_space(train.spec):
        raise WeightSpaceError(
            f"the {what} networks and the training zoo have different architectures: {what} "
            f"[{ws.spec.describe()}; {ws.spec.num_params} parameters] vs training [{train.spec.describe()}; "
            f"{train.spec.num_params} parameters]")
    if len(ws) and not bool(torch.isfinite(ws.flatten()).all()):
        bad = int((~torch.isfinite(ws.flatten()).all(1)).sum())
        raise WeightSpaceError(f"{bad} of the {what} networks have non-finite weights")


def _check_task(task: Any):
    if isinstance(task, str):  # names are resolved by the caller (e.g. `wspace audit` uses datasets_zoo.get_task)
        raise WeightSpaceError(f"task must be a task object (e.g. datasets_zoo.get_task({task!r})), not its name")
    return task


class _Auditor:
    """Shared state: the aligned index over the training set, the probe, settings."""

    def __init__(self, train: WeightSpace, probe: bh.ProbeSet | None, *, shortlist: int, keep: int, exact: bool,
                 seed: int, log: Callable[[str], None], groups=None, symmetries: str = "all"):
        self.probe, self.log = probe, log
        self.k, self.keep, self.exact = shortlist, keep, exact
        self.canonical = symmetries == "all"
        self.train_raw = train
        t0 = time.perf_counter()
        # Distances up to every symmetry: networks are put in the canonical frame of their signs /
        # phases (exact, so weight matching then sees permutations only) and searched there; with
        # ReLU-like groups also in the canonical frame of their scales (a rescaled copy is found
        # there, a raw interpolation of aligned checkpoints in the first), the nearer result counting.
        self.train_signed = canonical_frame(train)[0] if self.canonical else train
        self.index = AlignedIndex(self.train_signed, groups=groups, seed=seed)
        self.scaled = self.canonical and any("scale" in g.symmetries for g in train.spec.groups)
        self.train = canonicalize_scales(self.train_signed) if self.scaled else self.train_signed
        self.index_scaled = AlignedIndex(self.train, groups=groups, seed=seed) if self.scaled else None
        self.timings = {"index": time.perf_counter() - t0}
        self.train_beh = bh.behaviour(train, probe) if probe is not None else None

    def _tick(self, key: str, t0: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def _search(self, ws: WeightSpace, excl: Any) -> tuple[list[tuple[torch.Tensor, torch.Tensor, Any]], Any]:
        """Aligned search in each canonical frame; returns, per frame, the aligned neighbours
        ``[Q, K, D]`` moved back into each query's own frame (so distances and the
        interpolation geometry are in weight units), their valid mask and the search result,
        and the sign-frame result (the one certification and pair counts refer to)."""
        kw = dict(k=self.k, keep=self.keep, exclude=excl, exact=self.exact)
        if not self.canonical:
            res = self.index.query(ws, **kw)
            return [(*res.aligned_neighbors(self.train), res)], res

        def in_query_frame(search: Any, keys: WeightSpace, transform: tuple) -> tuple:
            nb, valid = search.aligned_neighbors(keys)
            Q, K, D = nb.shape
            rep = tuple({g: f.repeat_interleave(K, 0) for g, f in part.items()} for part in transform)
            moved = from_canonical(WeightSpace.from_flat(keys.spec, nb.reshape(Q * K, D)), rep)
            return moved.flatten().double().reshape(Q, K, D), valid, search

        signed, shifts, flips = canonical_frame(ws)
        res = self.index.query(signed, **kw)
        out = [in_query_frame(res, self.train_signed, (shifts, flips, {}))]
        if self.scaled:
            scales = canonical_scales(signed)
            scaled = self.index_scaled.query(scale_neurons(signed, scales), **kw)
            out.append(in_query_frame(scaled, self.train, (shifts, flips, scales)))
        return out, res

    def measure(self, ws: WeightSpace, exclude_self: torch.Tensor | None = None, runs_exclude=None,
                behaviour: bool = True) -> dict[str, np.ndarray]:
        """Every metric for the networks ``ws`` against the training set.

        ``exclude_self``: ``[Q]`` training row of each query (itself, excluded), or None;
        ``runs_exclude``: a callable masking keys of the query's own run.
        """
        excl = None
        if exclude_self is not None:
            N = len(self.train)
            ids = exclude_self

            def excl(pos: torch.Tensor) -> torch.Tensor:
                m = torch.arange(N).unsqueeze(0) == ids[pos].unsqueeze(1)
                return m | runs_exclude(pos) if runs_exclude is not None else m

        t0 = time.perf_counter()
        raw_d, raw_i = nearest_raw(ws.flatten(), self.train_raw.flatten(), exclude=excl)
        self._tick("raw", t0)
        t0 = time.perf_counter()
        frames, res = self._search(ws, excl)
        self._tick("aligned", t0)
        t0 = time.perf_counter()
        q = ws.flatten().double()
        distance = seg = seg_t = hull = nearest = None
        for nb, valid, search in frames:  # per query: the nearest neighbour, the best segment and hull
            d = (nb - q.unsqueeze(1)).norm(dim=2).masked_fill(~valid, float("inf"))
            dmin, k = d.min(1)
            near = torch.where(torch.isfinite(dmin), search.neighbors.gather(1, k.unsqueeze(1)).squeeze(1),
                               torch.full_like(k, -1))
            G = gram(nb, q, valid)
            s_d, s_t = segment_distance(G, valid)
            h, _ = hull_distance(G, valid)
            if distance is None:
                distance, nearest, seg, seg_t, hull = dmin, near, s_d, s_t, h
            else:
                closer, on_seg = dmin < distance, s_d < seg
                distance, nearest = torch.where(closer, dmin, distance), torch.where(closer, near, nearest)
                seg, seg_t = torch.where(on_seg, s_d, seg), torch.where(on_seg, s_t, seg_t)
                hull = torch.minimum(hull, h)
        self._tick("geometry", t0)
        out = {
            "raw_distance": raw_d.numpy(), "raw_index": raw_i.numpy(),
            "aligned_distance": distance.numpy(), "nearest_index": nearest.numpy(),
            "segment_distance": seg.numpy(), "segment_t": seg_t.numpy(),
            "hull_distance": torch.minimum(hull, seg).numpy(),
            "certified": res.certified.numpy(),
            "alignments": sum(f[2].evaluated for f in frames).numpy(),
        }
        if behaviour and self.probe is not None:
            t0 = time.perf_counter()
            b = bh.behaviour(ws, self.probe)
            # the same keys as the distances: itself and, for the run spread, its own run excluded
            iou, iou_i = bh.max_error_iou(b, self.train_beh, excl)
            agr, agr_i = bh.max_agreement(b, self.train_beh, excl)
            div, div_i = bh.min_divergence(b, self.train_beh, excl)
            near = torch.as_tensor(out["nearest_index"])
            near_acc = torch.where(near >= 0, self.train_beh.accuracy.double()[near.clamp_min(0)],
                                   torch.tensor(float("nan"), dtype=torch.float64))
            out.update({
                "accuracy": b.accuracy.double().numpy(), "nearest_accuracy": near_acc.numpy(),
                "errors": b.errors.sum(1).numpy(),
                "max_error_iou": iou.numpy(), "max_error_iou_index": iou_i.numpy(),
                "max_agreement": agr.numpy(), "max_agreement_index": agr_i.numpy(),
                "min_divergence": div.numpy(), "min_divergence_index": div_i.numpy(),
            })
            self._tick("behaviour", t0)
        return out


def _runs_of(records: list[dict] | None, runs: Sequence | None, n: int) -> np.ndarray | None:
    if runs is not None:
        r = np.asarray([str(x) for x in runs], dtype=object)
        if len(r) != n:
            raise WeightSpaceError(f"runs has {len(r)} labels for {n} training networks")
        return r
    if records is None or not all("run" in rec and rec["run"] is not None for rec in records):
        return None
    return np.asarray([str(rec["run"]) for rec in records], dtype=object)


def audit(
    generated: Any,
    training: Any,
    task: Any = None,
    reference: Any = None,
    *,
    runs: Sequence | None = None,
    shortlist: int = 16,
    keep: int = 8,
    exact: bool = False,
    max_reference: int = 256,
    probe_size: int = 256,
    probe_noise: float = 0.5,
    baselines: bool = True,
    n_baseline: int = 64,
    noise_scales: Sequence[float] | None = None,
    average_k: int = 16,
    fallback_noise_scale: float = 0.05,
    replica_factor: float = 0.25,
    quantile: float = 0.05,
    interpolation_ratio: float = 0.5,
    novel_quantile: float = 0.05,
    symmetries: str = "all",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit ``generated`` networks against the ``training`` networks they were learned from.

    Args:
        generated, training, reference: a :class:`~wspace.WeightSpace` or a
            :class:`datasets_zoo.Zoo` each, one architecture. ``reference`` (optional):
            independently trained models, the best yardstick of novelty.
        task: a classification task object (e.g. ``datasets_zoo.get_task("digits:0-1-2-3-4")``) for
            accuracy and behaviour similarity; None: weight-space metrics only.
        runs: run label per training network (default: the zoo records' ``run``); the
            spread of independent solutions compares checkpoints of different runs.
        shortlist: candidates aligned exactly per generated network (pre-filter).
        keep: nearest aligned checkpoints (at most two per run when runs are known)
            whose convex hull tests for interpolation.
        exact: align until provably equal to the exhaustive search (slower).
        max_reference: training checkpoints (random subsample) measured against the
            others for the train-to-train reference and the run spread.
        probe_size, probe_noise: the probe set (noisy test inputs) for agreement/divergence.
        baselines: also audit the trivial baselines, ``n_baseline`` networks each.
        noise_scales: relative noise scales (default ``wspace.audit.baselines.DEFAULT_NOISE_SCALES``).
        average_k: checkpoints per aligned average.
        fallback_noise_scale: noise scale giving the thresholds of an uncalibrated audit.
        replica_factor, quantile, interpolation_ratio, novel_quantile: verdict rules
            (:mod:`.calibrate`; ``novel_quantile``: the share of independent solutions that
            may read as near-copies).
        symmetries: ``"all"``: distances up to every symmetry the spec allows (permutations,
            sign flips of tanh / sine neurons, SIREN phase shifts, positive rescaling of
            ReLU-like neurons; networks are put in the canonical frame of the non-permutation
            ones first); ``"permutations"``: permutations only.
        seed: everything random (subsamples, baselines, probe, weight matching order).
        progress: called with a short message before each phase.

    Returns:
        :class:`AuditReport` with ``verdicts`` (one per generated network, in order).

    Raises:
        WeightSpaceError: architectures differ, empty inputs, non-finite weights, a task
            that is not a classification task or whose class count differs.
    """
    from . import baselines as bl

    log = progress or (lambda msg: None)
    if symmetries not in ("all", "permutations"):
        raise WeightSpaceError(f"symmetries must be 'all' or 'permutations', got {symmetries!r}")
    if not 0.0 < float(novel_quantile) < 0.5:
        raise WeightSpaceError(f"novel_quantile must lie in (0, 0.5), got {novel_quantile}")
    t_start = time.perf_counter()
    gen, gen_rec = as_population(generated, "generated")
    train, train_rec = as_population(training, "training")
    _check_spec(train, train, "training")
    _check_spec(gen, train, "generated")
    ref, ref_rec = (None, None) if reference is None else as_population(reference, "reference")
    if ref is not None:
        _check_spec(ref, train, "reference")
    task_obj = _check_task(task)
    probe = bh.make_probe(task_obj, size=probe_size, noise=probe_noise, seed=seed) if task_obj is not None else None
    run_labels = _runs_of(train_rec, runs, len(train))
    n_runs = 0 if run_labels is None else len(set(run_labels.tolist()))
    scales = tuple(bl.DEFAULT_NOISE_SCALES if noise_scales is None else noise_scales)
    g = torch.Generator().manual_seed(seed)

    log(f"indexing {len(train)} training networks")
    A = _Auditor(train, probe, shortlist=shortlist, keep=keep, exact=exact, seed=seed, log=log,
                 groups=run_labels.tolist() if n_runs >= 2 else None, symmetries=symmetries)

    log(f"measuring {len(gen)} generated networks")
    gen_m = A.measure(gen)

    # ---- train-to-train reference (published: self excluded) and run spread
    S = min(max_reference, len(train))
    sub = torch.randperm(len(train), generator=g)[:S].sort().values
    sub_ws = train.map(lambda t: t[sub])
    log(f"train-to-train reference on {S} checkpoints")
    tt = A.measure(sub_ws, exclude_self=sub, behaviour=True) if len(train) > 1 else None
    cross = None
    if n_runs >= 2:
        codes = {r: i for i, r in enumerate(sorted(set(run_labels.tolist())))}
        rc = torch.tensor([codes[r] for r in run_labels.tolist()])
        same_run = lambda pos: rc.unsqueeze(0) == rc[sub[pos]].unsqueeze(1)  # noqa: E731
        log("cross-run spread")
        cross = A.measure(sub_ws, exclude_self=sub, runs_exclude=same_run, behaviour=True)
    ref_m = None
    if ref is not None:
        log(f"measuring {len(ref)} reference networks")
        ref_m = A.measure(ref)

    # ---- baselines
    base: dict[str, dict] = {}
    if baselines and n_baseline > 0:
        log("baselines")
        for s in scales:
            base[f"noise@{s:g}"] = {"kind": "noise", "scale": float(s),
                                    "ws": bl.noise_baseline(train, n_baseline, float(s), generator=g)}
        if len(train) > 1:
            base["average"] = {"kind": "average", "k": min(average_k, len(train)),
                               "ws": bl.average_baseline(train, n_baseline, average_k, generator=g)}
            base["interpolation"] = {"kind": "interpolation", "alpha": "U(0,1)",
                                     "ws": bl.interpolation_baseline(train, n_baseline, alpha=None, runs=run_labels,
                                                                     generator=g)}
        base["gaussian"] = {"kind": "gaussian", "ws": bl.gaussian_baseline(train, n_baseline, generator=g)}
        for name, b in base.items():
            b["metrics"] = A.measure(b.pop("ws"))
    fallback_key = f"noise@{fallback_noise_scale:g}"

    # ---- thresholds
    functional = None
    if probe is not None:
        # the zoo's own accuracies when its records carry them (a multi-task zoo's models are
        # not meant to solve this task), else theirs on this task
        own = [(r.get("metrics") or {}).get("test_acc") for r in train_rec] if train_rec is not None else [None]
        acc = np.asarray(own, dtype=float) if all(a is not None for a in own) else A.train_beh.accuracy.double().numpy()
        functional = functional_bar(acc, train.spec.out_features)
    rules = dict(replica_factor=replica_factor, quantile=quantile, interpolation_ratio=interpolation_ratio,
                 novel_quantile=novel_quantile, functional=functional)
    if ref_m is not None:
        th = calibrate(ref_m["aligned_distance"], "reference", agreement_spread=ref_m.get("max_agreement"), **rules)
    elif cross is not None and np.isfinite(cross["aligned_distance"]).any():
        th = calibrate(cross["aligned_distance"], "runs", agreement_spread=cross.get("max_agreement"), **rules)
    else:  # no independent solutions: the most conservative rule (see calibrate.uncalibrated)
        top = max(scales)
        for s_ in (fallback_noise_scale, top):
            key = f"noise@{s_:g}"
            if key not in base:
                base[key] = {"kind": "noise", "scale": float(s_), "metrics": A.measure(
                    bl.noise_baseline(train, max(n_baseline, 16), float(s_), generator=g))}
        th = uncalibrated(float(np.median(base[fallback_key]["metrics"]["aligned_distance"])), fallback_noise_scale,
                          interpolation_ratio=interpolation_ratio,
                          novel_distance=float(np.median(base[f"noise@{top:g}"]["metrics"]["aligned_distance"])),
                          novel_scale=top, functional=functional)

    def verdicts_of(m: dict) -> list[str]:
        return label(m["aligned_distance"], m["hull_distance"], th, m.get("accuracy"), m.get("max_agreement"))

    verdicts = verdicts_of(gen_m)
    for b in base.values():
        b["verdicts"] = verdicts_of(b["metrics"])
    ref_verdicts = verdicts_of(ref_m) if ref_m is not None else None

    # ---- frontier
    frontier: dict[str, Any] = {}
    if probe is not None and any(b["kind"] == "noise" for b in base.values()):
        noise = {b["scale"]: b["metrics"] for b in base.values() if b["kind"] == "noise"}
        for axis, fn in (("aligned_distance", lambda m: m["aligned_distance"]),
                         ("probe_disagreement", lambda m: 1.0 - m["max_agreement"])):
            curve = noise_frontier({s: (fn(m), m["accuracy"]) for s, m in noise.items()})
            frontier[axis] = {"curve": curve, "generated": compare_to_frontier(fn(gen_m), gen_m["accuracy"], curve),
                              "baselines": {n: compare_to_frontier(fn(b["metrics"]), b["metrics"]["accuracy"], curve)
                                            for n, b in base.items() if b["kind"] != "noise"}}

    ids = [r.get("id") for r in train_rec] if train_rec is not None else None
    info = {
        "spec": train.spec.describe(), "num_params": train.spec.num_params, "n_generated": len(gen),
        "n_training": len(train), "n_reference": 0 if ref is None else len(ref), "n_runs": n_runs,
        "task": None if task_obj is None else task_obj.name, "train_reference_size": S,
        "settings": {"shortlist": shortlist, "keep": keep, "exact": exact, "max_reference": max_reference,
                     "probe_size": probe_size, "probe_noise": probe_noise, "n_baseline": n_baseline,
                     "noise_scales": list(scales), "average_k": average_k, "seed": seed,
                     "fallback_noise_scale": fallback_noise_scale, "novel_quantile": novel_quantile,
                     "symmetries": symmetries},
        "alignments_solved": A.index.pairs_solved + (A.index_scaled.pairs_solved if A.index_scaled else 0),
        "alignments_exhaustive": len(train) * (len(gen) + S * 2),
        "timings": {**A.timings, "total": time.perf_counter() - t_start},
        "generated_ids": [r.get("id") for r in gen_rec] if gen_rec is not None else None,
    }
    report = AuditReport(
        verdicts=verdicts, metrics=gen_m, thresholds=th, baselines=base,
        train_reference=tt, cross_run=cross, reference=ref_m, reference_verdicts=ref_verdicts,
        frontier=frontier, info=info, training_ids=ids,
    )
    report.summary = report.make_summary()
    return report
