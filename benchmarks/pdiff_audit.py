"""Does the audit catch a memorizing generator? p-diff trained on one run's last epochs, audited.

    python benchmarks/pdiff_audit.py            # 200 trajectory checkpoints, 2000 + 2000 training steps
    python benchmarks/pdiff_audit.py --quick    # 40 checkpoints, 300 + 300 steps (smoke run)

One MLP 64-32-32-10 is trained on digits (Adam, 6 epochs) and then for ``--checkpoints``
more epochs, saving after each: the trajectory p-diff trains on (the paper saves 200
checkpoints in the last epoch). ``--reference`` MLPs trained the same way from other seeds
are the independent solutions that calibrate the verdicts. p-diff
(:class:`generators.pdiff.PDiff`) is trained on the trajectory, samples ``--samples``
networks, and the audit labels them against the trajectory with the independent models
as reference. Published expectation (Zeng et al. 2025): near-copies. Target: >= 80%
replica or near-copy, <= 10% novel. Prints a table and writes
``benchmarks/results/pdiff_audit.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from datasets_zoo import ZooWriter, get_task  # noqa: E402
from datasets_zoo.train_vectorized import ClassifierData, train_classifiers  # noqa: E402
from generators.pdiff import PDiff  # noqa: E402
from wspace import WeightSpace  # noqa: E402
from wspace.audit import audit  # noqa: E402
from wspace.audit.calibrate import LABELS  # noqa: E402
from wspace.families import family_spec, init_weight_space  # noqa: E402

TASK = "digits"


def trajectory(n_ckpt: int, n_ref: int, seed: int = 0) -> tuple[WeightSpace, WeightSpace]:
    """(checkpoints after epochs 7 .. 6 + n_ckpt of run 0, the final epoch-6 networks of the
    ``n_ref`` other runs)."""
    task = get_task(TASK)
    spec = family_spec("mlp", in_features=64, hidden=[32, 32], num_classes=10)
    data = ClassifierData(task.x_train, task.y_train, task.x_test, task.y_test)
    M = 1 + n_ref
    snaps: dict[int, WeightSpace] = {}
    train_classifiers(init_weight_space(spec, M, generator=torch.Generator().manual_seed(seed)), data,
                      seeds=torch.arange(M) + 1000 * seed, optimizer="adam", lr=3e-3, epochs=6, batch_size=64,
                      save_epochs=(6,), on_save=lambda e, ws, m: snaps.__setitem__(e, ws))
    start = snaps[6]
    traj: dict[int, WeightSpace] = {}
    train_classifiers(start.map(lambda t: t[:1].clone()), data, seeds=torch.tensor([seed + 7]), optimizer="adam",
                      lr=3e-3, epochs=n_ckpt, batch_size=64, save_epochs=tuple(range(1, n_ckpt + 1)),
                      on_save=lambda e, ws, m: traj.__setitem__(e, ws))
    return WeightSpace.cat([traj[e] for e in sorted(traj)]), start.map(lambda t: t[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 checkpoints, short training (smoke run)")
    ap.add_argument("--checkpoints", type=int, help="trajectory checkpoints (default 200; quick 40)")
    ap.add_argument("--reference", type=int, default=32, help="independently trained reference models")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--steps", type=int, help="VAE and denoiser training steps each (default 2000; quick 300)")
    ap.add_argument("--work", help="directory for the zoo and the p-diff run (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "results" / "pdiff_audit.json"))
    args = ap.parse_args()
    n_ckpt = args.checkpoints or (40 if args.quick else 200)
    steps = args.steps or (300 if args.quick else 2000)
    t0 = time.perf_counter()
    traj, ref = trajectory(n_ckpt, args.reference)
    t_zoo = time.perf_counter() - t0
    print(f"trajectory of {len(traj)} checkpoints + {len(ref)} reference models in {t_zoo:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        zoo_dir = work / f"trajectory-{n_ckpt}"  # the same trajectory for the same length (seeded)
        if not zoo_dir.exists():
            with ZooWriter(zoo_dir, {"tasks": {}}) as w:
                w.append(traj, [{"id": f"ckpt-{i}", "run": 0, "epoch": 7 + i, "task": TASK}
                                for i in range(len(traj))])
        t0 = time.perf_counter()
        pipe = PDiff.train(str(zoo_dir), work / f"pdiff-{steps}", seed=0,
                           vae={"steps": steps}, denoiser={"steps": steps})
        t_train = time.perf_counter() - t0
        samples = pipe.sample(None, args.samples, generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        report = audit(samples, traj, task=get_task(TASK), reference=ref,
                       progress=lambda m: print(f"  [audit] {m}", flush=True))
        t_audit = time.perf_counter() - t0
    f = report.summary["fractions"]
    copies = f["replica"] + f["near-copy"] + f["interpolation"]
    res = {"machine": platform.machine(), "torch": torch.__version__, "quick": args.quick,
           "trajectory_checkpoints": len(traj), "reference_models": len(ref), "samples": args.samples,
           "training_steps": {"vae": steps, "denoiser": steps}, "settings": "generators.pdiff.PDIFF_SETTINGS",
           "answer": report.summary["answer"], "fractions": f,
           "replica_or_near_copy": f["replica"] + f["near-copy"], "memorized_incl_interpolation": copies,
           "novel": f["novel"] + f["novel, non-functional"],
           "sample_accuracy_mean": float(report.metrics["accuracy"].mean()),
           "trajectory_accuracy_mean": float(report.metrics["nearest_accuracy"].mean()),
           "thresholds": report.thresholds.to_dict(),
           "seconds": {"zoo": t_zoo, "train": t_train, "audit": t_audit}}
    print(report.table())
    print()
    rows = [("trajectory x reference", f"{len(traj)} checkpoints of one run x {len(ref)} independent models"),
            ("p-diff training", f"{steps} + {steps} steps, {t_train:.0f} s"),
            ("answer", res["answer"]),
            ("replica or near-copy", f"{res['replica_or_near_copy']:.0%} (target >= 80%)"),
            ("novel (incl. non-functional)", f"{res['novel']:.0%} (target <= 10%)"),
            ("sample accuracy", f"{res['sample_accuracy_mean']:.3f} (nearest checkpoints "
                                f"{res['trajectory_accuracy_mean']:.3f})")]
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
