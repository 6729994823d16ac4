"""Memorization audit in bounded memory: a 200,000-checkpoint zoo on disk against 2,000 generated networks.

    python benchmarks/audit_scale.py                  # 200,000 x 2,000 (zoo written under --work)
    python benchmarks/audit_scale.py --quick          # 20,000 x 200, for a smoke run

The training zoo is written shard by shard (4,096 checkpoints per shard) as a native
zoo: ``runs`` MLPs 64-32-32-10 are trained on digits (Adam, 6 epochs, checkpoints after
epochs 4, 5, 6) and every checkpoint is repeated, randomly permuted plus noise of 0.01 x
tensor rms, until the zoo has the target size (run label kept). The generated set (a
zoo too) plants the kinds of ``benchmarks/audit.py``: replicas (permuted, jittered zoo
checkpoints), aligned midpoints of two runs, networks trained from fresh seeds (novel)
and checkpoints with noise of 0.2 / 0.4 / 0.8 x rms (noisy copies).

The audit runs as a user runs it, ``python -m wspace audit generated=... zoo=...
task=digits out=...``, in a child process whose peak resident memory (``ru_maxrss``)
and wall time are reported. Then, on a subset (the first ``--recall-keys`` checkpoints
of the zoo and ``--recall-queries`` generated networks, all planted kinds), the
pre-filtered aligned search is compared with the exhaustive one (weight matching of
every query x key pair): the recall is the share of queries whose pre-filtered nearest
distance equals the exhaustive one. Prints a table, writes
``benchmarks/results/audit_scale.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from audit import jitter, merge_json, plant, print_rows, train  # noqa: E402  (benchmarks/audit.py: the same zoo recipe)
from datasets_zoo import Zoo, ZooWriter  # noqa: E402
from wspace import WeightSpace  # noqa: E402
from wspace.audit import AlignedIndex, exhaustive_nearest_aligned  # noqa: E402
from wspace.audit.calibrate import LABELS  # noqa: E402
from wspace.symmetry import canonical_frame, permute, random_permutation  # noqa: E402

SHARD = 4096


def write_zoo(path: Path, n_train: int, n_gen: int, seed: int = 0) -> dict:
    """The training zoo and the planted generated zoo under ``path`` (reused when complete)."""
    done = path / "built.json"
    if done.exists():
        info = json.loads(done.read_text())
        if info.get("n_train") == n_train and info.get("n_gen") == n_gen:
            return info
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    copies = 30
    runs_n = max(8, -(-n_train // (3 * copies)))
    ckpts = WeightSpace.cat(train(runs_n, seed=1))  # [3 * runs_n], run = position % runs_n
    n_base = len(ckpts)
    t_train = time.perf_counter() - t0
    with ZooWriter(path / "training", meta={"name": "audit-scale-training"}) as w:
        for start in range(0, n_train, SHARD):
            rows = torch.arange(start, min(start + SHARD, n_train))
            g = torch.Generator().manual_seed(1_000 + start)
            base = rows % n_base
            ws = ckpts.map(lambda t: t[base])
            moved = rows >= n_base  # the first copy of every checkpoint is the checkpoint itself
            shuffled = jitter(permute(ws, random_permutation(ws.spec, len(ws), g)), 0.01, g)
            ws = WeightSpace(ws.spec, [torch.where(moved.view(-1, *[1] * (a.dim() - 1)), b, a)
                                       for a, b in zip(ws.tensors, shuffled.tensors)])
            w.append(ws, [{"id": f"c{int(r)}", "run": f"r{int(b) % runs_n}", "epoch": 4 + int(b) // runs_n}
                          for r, b in zip(rows, base)])
    # the generated set: the planted kinds of benchmarks/audit.py
    gen, planted = plant(ckpts, ckpts, runs_n, n_gen, torch.Generator().manual_seed(seed))
    with ZooWriter(path / "generated", meta={"name": "audit-scale-generated"}) as w:
        w.append(gen, [{"id": f"g{j}", "planted": p} for j, p in enumerate(planted)])
    info = {"n_train": n_train, "n_gen": n_gen, "runs": runs_n, "base_checkpoints": n_base,
            "train_s": t_train, "build_s": time.perf_counter() - t0,
            "zoo_bytes": sum(f.stat().st_size for f in (path / "training").rglob("*") if f.is_file())}
    done.write_text(json.dumps(info))
    return info


def run_audit(work: Path, threads: int) -> dict:
    """``python -m wspace audit`` in a child process: wall time and peak RSS."""
    out = work / "audit"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT.parent)}
    cmd = [sys.executable, "-m", "wspace", "audit", f"generated={work / 'generated'}", f"zoo={work / 'training'}",
           "task=digits", f"out={out}"]
    print("$ " + " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout)
        raise SystemExit(f"the audit failed (exit {proc.returncode})")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux
    report = json.loads((out / "audit.json").read_text())
    return {"wall_s": wall, "peak_rss_bytes": peak, "report": report, "table": proc.stdout}


def recall(work: Path, n_keys: int, n_queries: int, k: int) -> dict:
    """Pre-filtered vs exhaustive aligned search on the first ``n_keys`` zoo checkpoints."""
    zoo = Zoo.open(work / "training").select(range(n_keys))
    gen_zoo = Zoo.open(work / "generated")
    planted = np.asarray([r["planted"] for r in gen_zoo.records])
    g = torch.Generator().manual_seed(5)
    pick = torch.randperm(len(gen_zoo), generator=g)[:n_queries].sort().values
    queries = canonical_frame(gen_zoo.weights(pick.numpy()))[0]
    index = AlignedIndex(zoo, transform=lambda ws: canonical_frame(ws)[0])
    t0 = time.perf_counter()
    res = index.query(queries, k=k)
    t_short = time.perf_counter() - t0
    t0 = time.perf_counter()
    d_ex, i_ex = exhaustive_nearest_aligned(index, queries)
    t_ex = time.perf_counter() - t0
    same = torch.isclose(res.distance, d_ex, rtol=1e-6, atol=1e-9)
    gap = (res.distance - d_ex) / d_ex.clamp_min(1e-12)
    kinds = planted[pick.numpy()]
    return {"keys": n_keys, "queries": n_queries, "shortlist": k, "recall": float(same.float().mean()),
            "within_1pct": float((gap <= 0.01).float().mean()), "within_5pct": float((gap <= 0.05).float().mean()),
            "recall_by_kind": {p: float(same[torch.from_numpy(kinds == p)].float().mean()) for p in sorted(set(kinds))},
            "certified": float(res.certified.float().mean()),
            "max_relative_gap": float(gap.max()),
            "shortlist_s": t_short, "exhaustive_s": t_ex, "exhaustive_pairs": n_keys * n_queries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 training x 200 generated")
    ap.add_argument("--work", default="/tmp/wspace-audit-scale", help="where the zoos and the report are written")
    ap.add_argument("--threads", type=int, default=2, help="threads of the audit process")
    ap.add_argument("--recall-keys", type=int, default=None, help="zoo checkpoints of the recall subset")
    ap.add_argument("--recall-queries", type=int, default=None, help="generated networks of the recall subset")
    ap.add_argument("--out", default=str(ROOT / "results" / "audit_scale.json"))
    args = ap.parse_args()
    n_train, n_gen = (20_000, 200) if args.quick else (200_000, 2_000)
    n_keys = args.recall_keys or (2_048 if args.quick else 8_192)
    n_q = args.recall_queries or (8 if args.quick else 24)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    built = write_zoo(work, n_train, n_gen)
    print(f"zoo: {n_train:,} training checkpoints ({built['zoo_bytes'] / 2**30:.2f} GiB on disk) + {n_gen:,} generated; "
          f"built in {built['build_s']:.0f}s", flush=True)
    a = run_audit(work, args.threads)
    rep = a.pop("report")
    print(a.pop("table"))
    planted = [r["planted"] for r in Zoo.open(work / "generated").records]
    verdicts = rep["verdicts"]
    agree = {kind: {v: sum(1 for x, p in zip(verdicts, planted) if p == kind and x == v) / planted.count(kind)
                    for v in LABELS} for kind in sorted(set(planted))}
    rc = recall(work, n_keys, n_q, 16)
    result = {
        "machine": platform.machine(), "torch": torch.__version__, "threads": args.threads, "quick": args.quick,
        "n_training": n_train, "n_generated": n_gen, "zoo": built,
        "audit_wall_s": a["wall_s"], "audit_peak_rss_gib": a["peak_rss_bytes"] / 2**30,
        "audit_phases_s": rep["info"]["timings"], "alignments_solved": rep["info"]["alignments_solved"],
        "answer": rep["summary"]["answer"], "planted_vs_verdict": agree, "recall": rc,
    }
    rows = [("training x generated", f"{n_train:,} x {n_gen:,} (MLP 64-32-32-10, {built['zoo_bytes'] / 2**30:.2f} GiB)"),
            ("audit wall time", f"{a['wall_s']:.0f} s on {args.threads} threads (" + ", ".join(
                f"{k} {v:.0f}" for k, v in rep["info"]["timings"].items() if k != "total") + ")"),
            ("audit peak memory (RSS)", f"{result['audit_peak_rss_gib']:.2f} GiB"),
            ("pre-filter recall", f"{rc['recall']:.1%} of {rc['queries']} queries x {rc['keys']:,} keys find the "
             f"exhaustive nearest distance, {rc['within_1pct']:.0%} within 1% (max gap {rc['max_relative_gap']:.1%}; "
             f"certified {rc['certified']:.0%}; shortlist {rc['shortlist_s']:.1f} s, exhaustive {rc['exhaustive_s']:.0f} s)"),
            ("pre-filter recall by kind", ", ".join(f"{k} {v:.0%}" for k, v in rc["recall_by_kind"].items()))]
    rows += [(f"planted {k}", ", ".join(f"{v} {x:.0%}" for v, x in d.items() if x)) for k, d in agree.items()]
    print_rows(rows)
    merge_json(Path(args.out), {"quick" if args.quick else "full": result})


if __name__ == "__main__":
    main()
