"""Memorization audit at scale: 10,000 training x 1,000 generated checkpoints, and the pre-filter's speed-up.

    python benchmarks/audit.py            # full: 10,000 training x 1,000 generated
    python benchmarks/audit.py --quick    # 512 x 100, for a smoke run
    python benchmarks/audit.py --d2nwg <samples zoo> --zoo <training zoo> --task <name>   # audit D2NWG samples

Synthetic zoo (2-hidden-layer MLP 64-32-32-10 on digits): ``runs`` networks are trained
vectorized (Adam, 6 epochs, checkpoints after epochs 4, 5, 6); each checkpoint gets
``copies - 1`` extra versions, randomly permuted plus small Gaussian noise (0.01 x
tensor rms), labelled with the source run, to reach the target size. The "generated"
set mixes four planted kinds in equal parts: noisy permuted copies of training
checkpoints (replicas), aligned midpoints of two runs (interpolations), networks trained
from fresh seeds (novel) and training checkpoints with noise of 0.2, 0.4 or 0.8 x rms (noisy
copies: they must never read as novel while nearer to the zoo than independent solutions).

Figures: the audit's wall time by phase; the aligned search of the generated set with
the pre-filter (canonical-frame shortlist of ``k`` + invariant lower bound; its time
includes putting every key in the canonical frame, which the first search does) against the
exhaustive search (weight matching of every generated x training pair), whose time is
*extrapolated* from the measured per-pair time on a subset of queries (all training
keys), and on that subset how often the shortlist finds the exhaustive nearest
distance. Prints a table and writes ``benchmarks/results/audit.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from datasets_zoo import get_task  # noqa: E402
from wspace.families import family_spec, init_weight_space  # noqa: E402
from datasets_zoo.train_vectorized import ClassifierData, train_classifiers  # noqa: E402
from wspace import WeightSpace  # noqa: E402
from wspace.align import align  # noqa: E402
from wspace.audit import AlignedIndex, audit, exhaustive_nearest_aligned  # noqa: E402
from wspace.audit.calibrate import LABELS  # noqa: E402
from wspace.symmetry import permute, random_permutation  # noqa: E402

TASK = "digits"


def train(n: int, seed: int, epochs: int = 6, save=(4, 5, 6)) -> list[WeightSpace]:
    """``n`` MLPs 64-32-32-10 trained together; their checkpoints at each epoch of ``save``."""
    task = get_task(TASK)
    spec = family_spec("mlp", in_features=64, hidden=[32, 32], num_classes=10)
    snaps: dict[int, WeightSpace] = {}
    train_classifiers(init_weight_space(spec, n, generator=torch.Generator().manual_seed(seed)),
                      ClassifierData(task.x_train, task.y_train, task.x_test, task.y_test),
                      seeds=torch.arange(n) + 1_000_003 * seed, optimizer="adam", lr=3e-3, epochs=epochs,
                      batch_size=64, save_epochs=save, on_save=lambda e, ws, m: snaps.__setitem__(e, ws))
    return [snaps[e] for e in save]


def jitter(ws: WeightSpace, scale: float, g: torch.Generator) -> WeightSpace:
    return WeightSpace(ws.spec, [t + scale * float(t.pow(2).mean().sqrt()) * torch.randn(t.shape, generator=g)
                                 for t in ws.tensors])


def synthesize(n_train: int, n_gen: int, seed: int = 0) -> tuple[WeightSpace, list[int], WeightSpace, list[str]]:
    g = torch.Generator().manual_seed(seed)
    copies = 5
    runs_n = -(-n_train // (3 * copies))
    base = train(runs_n, seed=1)
    ckpts = WeightSpace.cat(base)  # [3 * runs_n], run = position % runs_n
    base_runs = [i % runs_n for i in range(len(ckpts))]
    parts, runs = [ckpts], list(base_runs)
    for _ in range(copies - 1):
        parts.append(jitter(permute(ckpts, random_permutation(ckpts.spec, len(ckpts), g)), 0.01, g))
        runs += base_runs
    zoo = WeightSpace.cat(parts)[:n_train]
    runs = runs[:n_train]
    gen, planted = plant(zoo, ckpts, runs_n, n_gen, g)
    return zoo, runs, gen, planted


def plant(pool: WeightSpace, ckpts: WeightSpace, runs_n: int, n_gen: int, g: torch.Generator
          ) -> tuple[WeightSpace, list[str]]:
    """The planted "generated" set and its labels: permuted jittered copies of ``pool``
    networks, aligned midpoints of checkpoints of two runs (``ckpts``: run = position %
    ``runs_n``), networks trained from fresh seeds, ``pool`` networks plus noise."""
    q = n_gen // 4
    i = torch.randint(len(pool), (q,), generator=g)
    replicas = jitter(permute(pool.map(lambda t: t[i]), random_permutation(pool.spec, q, g)), 0.01, g)
    a = torch.randint(len(ckpts), (q,), generator=g)
    b = (a + 1 + torch.randint(runs_n - 1, (q,), generator=g)) % runs_n + (a // runs_n) * runs_n  # another run
    xa, xb = ckpts.map(lambda t: t[a]), ckpts.map(lambda t: t[b])
    mids = (xa + align(xb, xa)) * 0.5
    novel = train(n_gen - 3 * q, seed=2, save=(6,))[0]
    sizes = [q // 3, q // 3, q - 2 * (q // 3)]
    noisy = [jitter(pool.map(lambda t: t[torch.randint(len(pool), (k,), generator=g)]), sc, g)
             for k, sc in zip(sizes, (0.2, 0.4, 0.8))]
    gen = WeightSpace.cat([replicas, mids, novel, *noisy])
    planted = (["replica"] * q + ["interpolation"] * q + ["novel"] * (n_gen - 3 * q)
               + [f"noisy copy ({sc})" for k, sc in zip(sizes, (0.2, 0.4, 0.8)) for _ in range(k)])
    return gen, planted


def bench(n_train: int, n_gen: int, k: int, n_exhaustive: int, max_reference: int) -> dict:
    t0 = time.perf_counter()
    zoo, runs, gen, planted = synthesize(n_train, n_gen)
    t_synth = time.perf_counter() - t0
    print(f"synthesized {len(zoo)} training + {len(gen)} generated networks ({zoo.spec.num_params} params) "
          f"in {t_synth:.1f}s", flush=True)

    t0 = time.perf_counter()
    report = audit(gen, zoo, task=get_task(TASK), runs=runs, shortlist=k, max_reference=max_reference,
                   progress=lambda m: print(f"  [audit] {m}", flush=True))
    t_audit = time.perf_counter() - t0
    agree = {}
    for kind in sorted(set(planted)):
        sel = [v for v, p in zip(report.verdicts, planted) if p == kind]
        agree[kind] = {v: sel.count(v) / len(sel) for v in LABELS}
    # the planted noisy copies nearer to the zoo than the novel threshold: the share labelled novel (target 0)
    th = report.thresholds
    near = [v for v, p, d in zip(report.verdicts, planted, report.metrics["aligned_distance"])
            if p.startswith("noisy") and d < th.novel]
    noisy_near_novel = sum(v.startswith("novel") for v in near) / max(1, len(near))

    # pre-filtered vs exhaustive aligned search of the generated set
    index = AlignedIndex(zoo)
    prep = index.prepare(gen)
    t0 = time.perf_counter()
    res = index.query(prep, k=k)
    t_filtered = time.perf_counter() - t0
    g = torch.Generator().manual_seed(3)
    sub = torch.randperm(len(gen), generator=g)[:n_exhaustive]
    t0 = time.perf_counter()
    d_ex, _ = exhaustive_nearest_aligned(index, gen.map(lambda t: t[sub]))
    t_ex_sub = time.perf_counter() - t0
    per_pair = t_ex_sub / (len(sub) * len(zoo))
    t_ex = per_pair * len(gen) * len(zoo)
    d_f = res.distance[sub]
    same = torch.isclose(d_f, d_ex, rtol=1e-6, atol=1e-9)
    gap = ((d_f - d_ex) / d_ex.clamp_min(1e-12)).numpy()
    return {
        "n_training": len(zoo), "n_generated": len(gen), "num_params": zoo.spec.num_params,
        "spec": zoo.spec.describe(), "shortlist": k,
        "synthesize_s": t_synth, "audit_s": t_audit, "audit_phases_s": report.info["timings"],
        "audit_alignments_solved": report.info["alignments_solved"],
        "fractions": report.summary["fractions"], "answer": report.summary["answer"], "planted_vs_verdict": agree,
        "noisy_copies_below_novel_threshold": len(near), "of_them_novel": noisy_near_novel,
        "baseline_verdicts": {n: {v: b["verdicts"].count(v) / len(b["verdicts"]) for v in LABELS}
                              for n, b in report.baselines.items()},
        "thresholds": report.thresholds.to_dict(), "frontier": report.summary.get("frontier"),
        "filtered_search_s": t_filtered, "filtered_pairs": int(res.evaluated.sum()),
        "filtered_certified": float(res.certified.float().mean()),
        "exhaustive_subset_queries": len(sub), "exhaustive_subset_s": t_ex_sub, "exhaustive_per_pair_ms": per_pair * 1e3,
        "exhaustive_extrapolated_s": t_ex, "speedup": t_ex / t_filtered,
        "subset_same_nearest_distance": float(same.float().mean()),
        "subset_mean_relative_gap": float(np.mean(gap)), "subset_max_relative_gap": float(np.max(gap)),
        "table": report.table(),
    }


def bench_d2nwg(samples: str, zoo: str, task: str, out: Path, split: str | None = None,
                same_task: bool = False) -> dict:
    from datasets_zoo import Zoo

    training = Zoo.open(zoo)
    if split is not None:  # the checkpoints the generator was trained on (e.g. digits-tasks' "train" tasks)
        training = training.filter(split=split)
    if same_task:  # a multi-task zoo: baselines and behaviour against the models of the samples' own task
        training = training.filter(task=task)
    report = audit(Zoo.open(samples), training, task=get_task(task), progress=lambda m: print(f"  [audit] {m}", flush=True))
    report.save(out)
    print(report.table())
    return {"samples": samples, "zoo": zoo, "zoo_split": split, "same_task": same_task, "training_checkpoints": len(training),
            "task": task, "fractions": report.summary["fractions"],
            "frontier": report.summary.get("frontier"), "thresholds": report.thresholds.to_dict(),
            "report_dir": str(out), "timings": report.info["timings"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512 training x 100 generated (smoke run)")
    ap.add_argument("--shortlist", type=int, default=16)
    ap.add_argument("--d2nwg", help="zoo of D2NWG samples to audit (with --zoo and --task)")
    ap.add_argument("--zoo", help="the training zoo of the D2NWG samples")
    ap.add_argument("--task", help="task of the D2NWG samples, e.g. digits:0-1-2-3-4")
    ap.add_argument("--split", help="audit against the training zoo's records with this `split` (e.g. train)")
    ap.add_argument("--same-task", action="store_true", help="audit against the training models of --task only")
    ap.add_argument("--out", default=str(ROOT / "results" / "audit.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    result: dict = {"machine": platform.machine(), "torch": torch.__version__, "threads": 1, "quick": args.quick}
    if args.d2nwg:
        if not (args.zoo and args.task):
            ap.error("--d2nwg needs --zoo and --task")
        result["d2nwg"] = bench_d2nwg(args.d2nwg, args.zoo, args.task, Path(args.out).parent / "audit_d2nwg",
                                      args.split, args.same_task)
    else:
        n_train, n_gen = (512, 100) if args.quick else (10_000, 1_000)
        r = bench(n_train, n_gen, args.shortlist, n_exhaustive=8 if args.quick else 16,
                  max_reference=128 if args.quick else 256)
        result["scale"] = r
        print(r.pop("table"))
        print()
        rows = [("training x generated", f"{r['n_training']:,} x {r['n_generated']:,} ({r['spec']})"),
                ("audit wall time", f"{r['audit_s']:.1f} s (" + ", ".join(
                    f"{k} {v:.1f}" for k, v in r["audit_phases_s"].items() if k != "total") + ")"),
                ("aligned search, pre-filtered", f"{r['filtered_search_s']:.2f} s, {r['filtered_pairs']:,} weight "
                 f"matchings, {r['filtered_certified']:.0%} certified exact"),
                ("aligned search, exhaustive", f"{r['exhaustive_extrapolated_s']:.0f} s (extrapolated from "
                 f"{r['exhaustive_per_pair_ms']:.3f} ms/pair on {r['exhaustive_subset_queries']} queries x all keys)"),
                ("pre-filter speed-up", f"{r['speedup']:.0f}x"),
                ("shortlist = exhaustive", f"{r['subset_same_nearest_distance']:.0%} of the subset (mean relative "
                 f"gap {r['subset_mean_relative_gap']:.2%}, max {r['subset_max_relative_gap']:.2%})"),
                ("noisy copies nearer than the novel threshold", f"{r['noisy_copies_below_novel_threshold']}, of which "
                 f"{r['of_them_novel']:.0%} labelled novel (target 0%)")]
        rows += [(f"planted {k}", ", ".join(f"{v} {x:.0%}" for v, x in d.items() if x))
                 for k, d in r["planted_vs_verdict"].items()]
        rows += [(f"baseline {k}", ", ".join(f"{v} {x:.0%}" for v, x in d.items() if x))
                 for k, d in r["baseline_verdicts"].items()]
        print_rows(rows)
    merge_json(Path(args.out), result)


def print_rows(rows: list[tuple[str, str]]) -> None:
    """A two-column table, the first column aligned."""
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")


def merge_json(out: Path, update: dict) -> None:
    """Write ``update`` into the JSON file ``out``, keeping its other keys."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prev = json.loads(out.read_text()) if out.exists() else {}
    prev.update(update)
    out.write_text(json.dumps(prev, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
