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

The training set is streamed (:mod:`.population`): every network measured goes through
one shared pass over it in chunks, then a pass aligning the shortlisted candidates, so
memory does not grow with the zoo's weights.
"""
from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Sequence

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
from .population import Population
from .running import RunningBest
from .search import AlignedIndex, Exclusion

__all__ = ["audit", "as_population"]


def as_population(x: Any, what: str) -> tuple[WeightSpace, list[dict] | None]:
    """A WeightSpace or a Zoo -> ``(weights in memory, records or None)`` (the generated and
    reference sets; the training set is streamed, see :class:`.population.Population`)."""
    if isinstance(x, WeightSpace):
        if len(x) == 0:
            raise WeightSpaceError(f"the {what} set is empty: an audit needs at least one {what} network")
        return x.detach().to("cpu"), None
    if hasattr(x, "weights") and hasattr(x, "records"):  # datasets_zoo.Zoo (not imported: no dependency)
        if len(x) == 0:
            raise WeightSpaceError(f"the {what} zoo is empty", file=getattr(x, "path", None))
        return x.weights().to("cpu"), x.records
    raise WeightSpaceError(f"the {what} networks must be a WeightSpace or a Zoo, got {type(x).__name__}")


def _check_spec(ws: WeightSpace, spec: Any, what: str) -> None:
    if not ws.spec.same_space(spec):
        raise WeightSpaceError(
            f"the {what} networks and the training zoo have different architectures: {what} "
            f"[{ws.spec.describe()}; {ws.spec.num_params} parameters] vs training [{spec.describe()}; "
            f"{spec.num_params} parameters]")
    if len(ws) and not bool(torch.isfinite(ws.flatten()).all()):
        bad = int((~torch.isfinite(ws.flatten()).all(1)).sum())
        raise WeightSpaceError(f"{bad} of the {what} networks have non-finite weights")


def _check_task(task: Any):
    if isinstance(task, str):  # names are resolved by the caller (e.g. `wspace audit` uses datasets_zoo.get_task)
        raise WeightSpaceError(f"task must be a task object (e.g. datasets_zoo.get_task({task!r})), not its name")
    return task


class _Group(NamedTuple):
    """Networks measured against the training set in the shared pass."""

    ws: WeightSpace
    self_rows: torch.Tensor | None = None  # training row of each (itself excluded)
    own_run: bool = False  # its whole run excluded as well (the spread of independent runs)


def _global(value: torch.Tensor, arg: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk's best ``(value, local index)`` -> ``(value, training row or -1 when none)``."""
    return value, torch.where(torch.isfinite(value) & (arg >= 0), arg + start, torch.full_like(arg, -1))


class _Auditor:
    """Shared state: the aligned indexes over the streamed training set, the probe, settings."""

    def __init__(self, train: Population, probe: bh.ProbeSet | None, *, shortlist: int, keep: int, exact: bool,
                 seed: int, log: Callable[[str], None], runs: np.ndarray | None = None, groups: bool = False,
                 symmetries: str = "all"):
        self.population, self.probe, self.log = train, probe, log
        self.k, self.keep, self.exact = shortlist, keep, exact
        self.canonical = symmetries == "all"
        self.scaled = self.canonical and any("scale" in g.symmetries for g in train.spec.groups)
        self.key_runs = None
        if runs is not None:
            codes = {r: i for i, r in enumerate(sorted(set(runs.tolist())))}
            self.key_runs = torch.tensor([codes[r] for r in runs.tolist()], dtype=torch.long)
        labels = runs.tolist() if groups and runs is not None else None
        t0 = time.perf_counter()
        # Distances up to every symmetry: networks are put in the canonical frame of their signs /
        # phases (exact, so weight matching then sees permutations only) and searched there; with
        # ReLU-like groups also in the canonical frame of their scales (a rescaled copy is found
        # there, a raw interpolation of aligned checkpoints in the first), the nearer result counting.
        self.index = AlignedIndex(train, transform=_signed if self.canonical else None, groups=labels, seed=seed)
        self.index_scaled = AlignedIndex(train, transform=_scaled, groups=labels, seed=seed) if self.scaled else None
        self.timings = {"index": time.perf_counter() - t0}
        self.train_accuracy: torch.Tensor | None = None  # per training network, filled by a pass with a probe

    def _tick(self, key: str, t0: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def _exclusion(self, groups: list[_Group]) -> Exclusion | None:
        if all(g.self_rows is None for g in groups):
            return None
        self_rows = torch.cat([g.self_rows if g.self_rows is not None else torch.full((len(g.ws),), -1)
                               for g in groups])
        if self.key_runs is None or not any(g.own_run for g in groups):
            return Exclusion(self_rows)
        q_runs = torch.cat([self.key_runs[g.self_rows] if g.own_run else torch.full((len(g.ws),), -1)
                            for g in groups])
        return Exclusion(self_rows, q_runs, self.key_runs)

    def measure(self, groups: dict[str, _Group]) -> dict[str, dict[str, np.ndarray]]:
        """Every metric of every group's networks against the training set, in one pass over it."""
        names = list(groups)
        ws = WeightSpace.cat([groups[n].ws.map(lambda t: t.detach().float()) for n in names])
        Q, N = len(ws), len(self.population)
        excl = self._exclusion([groups[n] for n in names])
        everyone = torch.arange(Q)
        kw = dict(k=self.k, keep=self.keep, exclude=excl, exact=self.exact)
        frames: list[tuple[AlignedIndex, Any, tuple | None]] = []
        if not self.canonical:
            frames.append((self.index, self.index.search(ws, **kw), None))
        else:
            signed, shifts, flips = canonical_frame(ws)
            frames.append((self.index, self.index.search(signed, **kw), (shifts, flips, {})))
            if self.scaled:
                scales = canonical_scales(signed)
                frames.append((self.index_scaled, self.index_scaled.search(scale_neurons(signed, scales), **kw),
                               (shifts, flips, scales)))
        q_flat = ws.flatten()
        raw = RunningBest(Q)
        beh = None
        if self.probe is not None:
            qb = bh.behaviour(ws, self.probe)
            beh = {"max_error_iou": (bh.max_error_iou, RunningBest(Q, largest=True)),
                   "max_agreement": (bh.max_agreement, RunningBest(Q, largest=True)),
                   "min_divergence": (bh.min_divergence, RunningBest(Q))}
            train_acc = torch.empty(N, dtype=torch.float64)
        self.log(f"one pass over {N} training networks for {Q} networks ({len(frames)} frame(s))")
        t_pass, next_note = time.perf_counter(), 0.1
        for start, chunk in self.population.chunks():
            stop = start + len(chunk)
            t0 = time.perf_counter()
            d, i = nearest_raw(q_flat, chunk.flatten(), exclude=None if excl is None else
                               (lambda rows: excl(everyone[rows], start, stop)))
            raw.update(*_global(d, i, start))
            self._tick("raw", t0)
            if beh is not None:
                t0 = time.perf_counter()
                tb = bh.behaviour(chunk, self.probe)
                train_acc[start:stop] = tb.accuracy.double()
                ex = None if excl is None else (lambda pos: excl(pos, start, stop))
                for fn, best in beh.values():
                    best.update(*_global(*fn(qb, tb, ex), start))
                self._tick("behaviour", t0)
            t0 = time.perf_counter()
            for _, search, _ in frames:
                search.update(start, chunk)
            self._tick("candidates", t0)
            if stop / N >= next_note and stop < N:
                self.log(f"  {stop}/{N} training networks ({time.perf_counter() - t_pass:.0f}s)")
                next_note = stop / N + 0.1
        if beh is not None:
            self.train_accuracy = train_acc
        t0 = time.perf_counter()
        self.log(f"aligning {Q} networks to their {self.k} candidates")
        results = [(index, search.finish(), transform) for index, search, transform in frames]
        self._tick("aligned", t0)
        t0 = time.perf_counter()
        q = q_flat.double()
        distance = torch.full((Q,), float("inf"), dtype=torch.float64)
        nearest = torch.full((Q,), -1, dtype=torch.long)
        seg = torch.full((Q,), float("inf"), dtype=torch.float64)
        seg_t = torch.full((Q,), float("nan"), dtype=torch.float64)
        hull = torch.full((Q,), float("inf"), dtype=torch.float64)
        K = max(1, self.keep)
        step = max(1, 16_000_000 // (K * max(1, ws.spec.num_params)))  # neighbours gathered per block: 128 MB
        for s in range(0, Q, step):  # per block of queries: the nearest, the best segment and hull per frame
            rows = slice(s, min(s + step, Q))
            for index, res, transform in results:
                nb, valid = index.aligned_neighbors(res, rows)
                c, kk, D = nb.shape
                if transform is not None:  # back into each query's own frame (weight units)
                    rep = tuple({g: f[rows].repeat_interleave(kk, 0) for g, f in part.items()} for part in transform)
                    nb = from_canonical(WeightSpace.from_flat(ws.spec, nb.reshape(c * kk, D)), rep)
                    nb = nb.flatten().double().reshape(c, kk, D)
                qr = q[rows]
                dd = (nb - qr.unsqueeze(1)).norm(dim=2).masked_fill(~valid, float("inf"))
                dmin, j = dd.min(1)
                near = torch.where(torch.isfinite(dmin), res.neighbors[rows].gather(1, j.unsqueeze(1)).squeeze(1),
                                   torch.full_like(j, -1))
                G = gram(nb, qr, valid)
                s_d, s_t = segment_distance(G, valid)
                h, _ = hull_distance(G, valid)
                closer, on_seg = dmin < distance[rows], s_d < seg[rows]
                distance[rows] = torch.where(closer, dmin, distance[rows])
                nearest[rows] = torch.where(closer, near, nearest[rows])
                seg_t[rows] = torch.where(on_seg, s_t, seg_t[rows])
                seg[rows] = torch.where(on_seg, s_d, seg[rows])
                hull[rows] = torch.minimum(hull[rows], h)
        self._tick("geometry", t0)
        out = {
            "raw_distance": raw.value.numpy(), "raw_index": raw.index.numpy(),
            "aligned_distance": distance.numpy(), "nearest_index": nearest.numpy(),
            "segment_distance": seg.numpy(), "segment_t": seg_t.numpy(),
            "hull_distance": torch.minimum(hull, seg).numpy(),
            "certified": results[0][1].certified.numpy(),
            "alignments": sum(r[1].evaluated for r in results).numpy(),
        }
        if beh is not None:
            near_acc = torch.where(nearest >= 0, self.train_accuracy[nearest.clamp_min(0)],
                                   torch.tensor(float("nan"), dtype=torch.float64))
            out.update({"accuracy": qb.accuracy.double().numpy(), "nearest_accuracy": near_acc.numpy(),
                        "errors": qb.errors.sum(1).numpy()})
            for name, (_, best) in beh.items():
                out[name], out[f"{name}_index"] = best.value.numpy(), best.index.numpy()
        split, off = {}, 0
        for n in names:
            size = len(groups[n].ws)
            split[n] = {key: v[off:off + size] for key, v in out.items()}
            off += size
        return split


def _signed(ws: WeightSpace) -> WeightSpace:
    return canonical_frame(ws)[0]


def _scaled(ws: WeightSpace) -> WeightSpace:
    return canonicalize_scales(canonical_frame(ws)[0])


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
    baseline_pool: int = 4096,
    fallback_noise_scale: float = 0.05,
    replica_factor: float = 0.25,
    quantile: float = 0.05,
    interpolation_ratio: float = 0.5,
    novel_quantile: float = 0.05,
    symmetries: str = "all",
    chunk_rows: int | None = None,
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
        baseline_pool: the baselines are built from this many training checkpoints (a
            random subsample; all of them in a smaller zoo).
        fallback_noise_scale: noise scale giving the thresholds of an uncalibrated audit.
        replica_factor, quantile, interpolation_ratio, novel_quantile: verdict rules
            (:mod:`.calibrate`; ``novel_quantile``: the share of independent solutions that
            may read as near-copies).
        symmetries: ``"all"``: distances up to every symmetry the spec allows (permutations,
            sign flips of tanh / sine neurons, SIREN phase shifts, positive rescaling of
            ReLU-like neurons; networks are put in the canonical frame of the non-permutation
            ones first); ``"permutations"``: permutations only.
        chunk_rows: training networks held in memory at a time (default: about 8 million
            weights' worth); the training set is streamed in such chunks, never loaded whole.
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
    if chunk_rows is not None and int(chunk_rows) < 1:
        raise WeightSpaceError(f"chunk_rows must be a positive number of networks, got {chunk_rows!r}")
    train = Population(training, "training", chunk_rows)
    train_rec = train.records
    _check_spec(gen, train.spec, "generated")
    ref, ref_rec = (None, None) if reference is None else as_population(reference, "reference")
    if ref is not None:
        _check_spec(ref, train.spec, "reference")
    task_obj = _check_task(task)
    probe = bh.make_probe(task_obj, size=probe_size, noise=probe_noise, seed=seed) if task_obj is not None else None
    N = len(train)
    run_labels = _runs_of(train_rec, runs, N)
    n_runs = 0 if run_labels is None else len(set(run_labels.tolist()))
    scales = tuple(bl.DEFAULT_NOISE_SCALES if noise_scales is None else noise_scales)
    g = torch.Generator().manual_seed(seed)

    log(f"indexing {N} training networks")
    A = _Auditor(train, probe, shortlist=shortlist, keep=keep, exact=exact, seed=seed, log=log,
                 runs=run_labels, groups=n_runs >= 2, symmetries=symmetries)
    groups: dict[str, _Group] = {"generated": _Group(gen)}

    # ---- train-to-train reference (published: self excluded) and run spread
    S = min(max_reference, N)
    sub = torch.randperm(N, generator=g)[:S].sort().values
    sub_ws = train.rows(sub)
    if N > 1:
        groups["train"] = _Group(sub_ws, sub)
    if n_runs >= 2:
        groups["cross"] = _Group(sub_ws, sub, own_run=True)
    if ref is not None:
        groups["reference"] = _Group(ref)

    # ---- baselines, built from a subsample of the training set (all of it when small)
    if N <= baseline_pool:
        pool, pool_runs = train.rows(torch.arange(N)), run_labels
    else:
        pick = torch.randperm(N, generator=g)[:baseline_pool].sort().values
        pool, pool_runs = train.rows(pick), (None if run_labels is None else run_labels[pick.numpy()])
    base: dict[str, dict] = {}
    if baselines and n_baseline > 0:
        for s in scales:
            base[f"noise@{s:g}"] = {"kind": "noise", "scale": float(s),
                                    "ws": bl.noise_baseline(pool, n_baseline, float(s), generator=g)}
        if N > 1:
            base["average"] = {"kind": "average", "k": min(average_k, len(pool)),
                               "ws": bl.average_baseline(pool, n_baseline, average_k, generator=g)}
            base["interpolation"] = {"kind": "interpolation", "alpha": "U(0,1)",
                                     "ws": bl.interpolation_baseline(pool, n_baseline, alpha=None, runs=pool_runs,
                                                                     generator=g)}
        base["gaussian"] = {"kind": "gaussian", "ws": bl.gaussian_baseline(pool, n_baseline, generator=g)}

    def add_fallback() -> list[str]:  # no independent solutions: noise that calibrates the conservative rule
        added = []
        for s_ in (fallback_noise_scale, max(scales)):
            key = f"noise@{s_:g}"
            if key not in base:
                base[key] = {"kind": "noise", "scale": float(s_),
                             "ws": bl.noise_baseline(pool, max(n_baseline, 16), float(s_), generator=g)}
                added.append(key)
        return added

    if ref is None and n_runs < 2:
        add_fallback()
    for name, b in base.items():
        groups[f"baseline:{name}"] = _Group(b.pop("ws"))
    measured = A.measure(groups)
    gen_m, tt, cross, ref_m = (measured.get(k) for k in ("generated", "train", "cross", "reference"))
    for name, b in base.items():
        b["metrics"] = measured[f"baseline:{name}"]
    fallback_key = f"noise@{fallback_noise_scale:g}"

    # ---- thresholds
    functional = None
    if probe is not None:
        # the zoo's own accuracies when its records carry them (a multi-task zoo's models are
        # not meant to solve this task), else theirs on this task
        own = [(r.get("metrics") or {}).get("test_acc") for r in train_rec] if train_rec is not None else [None]
        acc = np.asarray(own, dtype=float) if all(a is not None for a in own) else A.train_accuracy.numpy()
        functional = functional_bar(acc, train.spec.out_features)
    rules = dict(replica_factor=replica_factor, quantile=quantile, interpolation_ratio=interpolation_ratio,
                 novel_quantile=novel_quantile, functional=functional)
    if ref_m is not None:
        th = calibrate(ref_m["aligned_distance"], "reference", agreement_spread=ref_m.get("max_agreement"), **rules)
    elif cross is not None and np.isfinite(cross["aligned_distance"]).any():
        th = calibrate(cross["aligned_distance"], "runs", agreement_spread=cross.get("max_agreement"), **rules)
    else:  # no independent solutions: the most conservative rule (see calibrate.uncalibrated)
        top = max(scales)
        late = add_fallback()  # only when the run spread turned out empty (normally built above)
        if late:
            extra = A.measure({k: _Group(base[k].pop("ws")) for k in late})
            for k in late:
                base[k]["metrics"] = extra[k]
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
        "n_training": N, "n_reference": 0 if ref is None else len(ref), "n_runs": n_runs,
        "task": None if task_obj is None else task_obj.name, "train_reference_size": S,
        "settings": {"shortlist": shortlist, "keep": keep, "exact": exact, "max_reference": max_reference,
                     "probe_size": probe_size, "probe_noise": probe_noise, "n_baseline": n_baseline,
                     "noise_scales": list(scales), "average_k": average_k, "seed": seed,
                     "fallback_noise_scale": fallback_noise_scale, "novel_quantile": novel_quantile,
                     "symmetries": symmetries},
        "alignments_solved": A.index.pairs_solved + (A.index_scaled.pairs_solved if A.index_scaled else 0),
        "alignments_exhaustive": N * (len(gen) + S * 2),
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
