"""Encoder benchmark: every weight-space encoder on the three tasks, same wall-clock budget per run.

    python benchmarks/encoders.py --quick      # smoke: tiny zoos built here, 1 s per run, hidden=8, 2 seeds
    python benchmarks/encoders.py --inr-zoo zoos/digits-inr --cnn-zoo zoos/digits-cnn \\
        --mlp-zoo zoos/digits-mlp --budget-s 120 --seeds 3 --device cuda     # the full benchmark
    python benchmarks/encoders.py --tasks inr_cls --encoders unf --inr-zoo zoos/digits-inr \
        --budget-s 1800 --seeds 1 --augment symmetry_inr --out benchmarks/results/encoders_long.json
                                                          # one long run (the 30-minute target)

Full zoos: ``wspace zoo build zoo=digits-inr out=zoos/digits-inr`` (and ``digits-cnn``,
``digits-mlp``). Encoders: flat_mlp, statnn, dwsnet, nfn_np, nfn_hnp, unf, graph, each
with its ``configs/train/encoder`` settings (an option that does not exist is skipped).

Tasks (``--tasks``), each through :func:`wspace.commands.train.fit` (the ``wspace train`` code path):

* ``inr_cls``: INR classification on digits-inr (test accuracy; predefined split by source image);
* ``gen_cnn`` / ``gen_mlp``: generalization prediction on digits-cnn / digits-mlp (Kendall
  tau and R^2 of predicted test accuracy; split by training run; a zoo mixing
  architectures is restricted to its most common one, reported in ``meta.zoos``);
* ``inr_edit``: INR dilation editing (render MSE; equivariant encoders only), with the
  unedited identity baseline.

Every run gets ``Trainer(max_time=budget, max_epochs=-1)`` (early stopping on the
validation metric may end it sooner; the cosine schedule decays over the time budget)
and is tested with its best validation checkpoint. Seeds change the model init and data
order, not the split.

Noise ceiling of generalization prediction: the same Kendall tau and R^2, on the same
test split, of each network's recorded *train* accuracy (a near-oracle that saw data the
encoders never see) against its test accuracy. The digits test set has 360 images and
many checkpoints sit near chance, so test accuracies carry sampling noise that no
predictor can rank; the ceiling shows how much (``ceiling`` in the JSON).

Efficiency, per encoder and zoo architecture: trainable parameters, train-step
throughput (networks/s; forward + backward + AdamW step on batches of 64 networks) and
peak memory of a train step (CUDA: peak allocated above the pre-model baseline; CPU:
peak RSS above the baseline after ``malloc_trim``, via ``/proc/self/clear_refs``).

Prints tables (mean ± std over seeds) and writes ``benchmarks/results/encoders.json``
(``encoders_quick.json`` with ``--quick``).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import torch  # noqa: E402

from datasets_zoo.build import build_zoo  # noqa: E402
from wspace.errors import WeightSpaceError  # noqa: E402
from wspace.config import group_options  # noqa: E402
from wspace.nn import build_encoder, encoder_class  # noqa: E402
from datasets_zoo import ZooDataModule  # noqa: E402
from wspace.commands.train import fit  # noqa: E402
from wspace.commands.train import encoder_config as train_encoder_config  # noqa: E402

ENCODER_CONFIGS = ("flat_mlp", "statnn", "dwsnet", "nfn_np", "nfn_hnp", "unf", "graph")
# key -> (task config, zoo key, target, metrics reported: (name, higher is better))
TASKS = {
    "inr_cls": ("inr_classification", "inr", "class", (("test/acc", True),)),
    "gen_cnn": ("generalization", "cnn", "test_acc", (("test/kendall_tau", True), ("test/r2", True))),
    "gen_mlp": ("generalization", "mlp", "test_acc", (("test/kendall_tau", True), ("test/r2", True))),
    "inr_edit": ("inr_editing", "inr", None, (("test/mse", False), ("test/identity_mse", False))),
}
QUICK_ZOOS = {  # seconds to build; enough runs for non-empty val / test splits
    "inr": ("digits-inr", {}),
    "cnn": ("digits-cnn", {"search": {"runs": 12}}),
    "mlp": ("digits-mlp", {"search": {"limit": 12, "space": {"width": [16], "activation": ["relu"]}}}),
}


# Train-step throughput of the published implementations on this kind of machine (digits
# INRs, two runs sharing 2 cores, so about one core each): (their width, INRs/s). The
# issue's target is 5x that, at equal width and depth; measured here on one thread.
PUBLISHED_INR_THROUGHPUT = {"dwsnet": (16, 270.0), "nfn_hnp": (32, 170.0)}
HIDDEN: dict = {}  # --hidden: an override of every encoder's `hidden` (quick mode: small models)


def encoder_config(name: str) -> dict:
    """The encoder option's config (``_target_`` + options), with this run's width override."""
    return {**train_encoder_config(name), **HIDDEN}


def has_equivariant(name: str) -> bool:
    """Whether the encoder option's class names a weight -> weight counterpart."""
    return encoder_class(encoder_config(name)["_target_"]).equivariant is not None


def available_encoders(requested: list[str]) -> list[str]:
    options = group_options("train", "encoder")
    out = []
    for e in requested:
        if e in options:
            out.append(e)
        else:
            print(f"  (skipping encoder '{e}': no configs/train/encoder/{e}.yaml)")
    return out


# --------------------------------------------------------------------------- efficiency
def _rss_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_cpu_peak() -> float | None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so the baseline is honest
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
    except OSError:
        return None
    return _rss_mb("VmRSS")


def efficiency(enc: str, dm: ZooDataModule, out_features: int, device: torch.device, steps: int, warmup: int,
               batch: int = 64, width: int | None = None) -> dict:
    """Parameters, train-step throughput (nets/s) and peak memory of one encoder on one
    architecture (``width`` overrides its ``hidden``)."""
    config = encoder_config(enc)
    if width is not None:
        config = {**config, "hidden": width}
    pos = torch.arange(batch) % len(dm.train)
    ws = dm.train.weights(pos.numpy()).to(device)
    y = torch.randn(batch, out_features, device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _reset_cpu_peak()
    model = build_encoder(config, dm.spec, out_features).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(ws), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if cuda:
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        hwm = _rss_mb("VmHWM")
        peak = None if base is None or hwm is None else hwm - base
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": params, "nets_per_s": batch * steps / dt, "peak_mb": peak}


# --------------------------------------------------------------------------- runs
def noise_ceiling(dm: ZooDataModule, proxy: str = "train_acc") -> dict:
    """Kendall tau and R^2 of ``proxy`` (a recorded metric) as a predictor of the target on
    ``dm``'s test split: what a near-oracle reaches on this zoo's test accuracies."""
    from wspace.tasks import kendall_tau, r2_score

    y = dm.test.targets.double()
    x = dm.test.record_values(proxy).double()
    # R^2 of the best affine map proxy -> target (the proxy is on another scale)
    a = torch.stack([x, torch.ones_like(x)], 1)
    fit_ = a @ torch.linalg.lstsq(a, y.unsqueeze(1)).solution.squeeze(1)
    return {"proxy": proxy, "n": len(y), "kendall_tau": float(kendall_tau(x, y)), "r2": float(r2_score(fit_, y)),
            "frac_below_0.2": float((y < 0.2).double().mean())}


def summarize(runs: list[dict]) -> dict:
    out: dict = {}
    for r in runs:
        if r.get("error"):
            out.setdefault(r["task"], {}).setdefault(r["encoder"], {})["error"] = r["error"]
            continue
        slot = out.setdefault(r["task"], {}).setdefault(r["encoder"], {})
        for k in list(TASKS[r["task"]][3]) + [("epochs", None), ("global_step", None)]:
            slot.setdefault(k[0], []).append(float(r[k[0]]))
    for task in out.values():
        for enc, slot in task.items():
            for k, vals in list(slot.items()):
                if k == "error":
                    continue
                t = torch.tensor(vals, dtype=torch.float64)
                slot[k] = {"mean": float(t.mean()), "std": float(t.std(correction=0)) if len(vals) > 1 else 0.0,
                           "n": len(vals), "values": vals}
    return out


def fmt(slot: dict | None) -> str:
    if not slot:
        return "-"
    return f"{slot['mean']:.4f} ± {slot['std']:.4f}"


def print_tables(summary: dict, eff: dict, encoders: list[str]) -> None:
    for key, per_enc in summary.items():
        metrics = [m for m, _ in TASKS[key][3]]
        print(f"\n== {key} ({TASKS[key][0]}) ==")
        head = f"{'encoder':<10} " + " ".join(f"{m:>22}" for m in metrics) + f" {'epochs':>8} {'steps':>8}"
        print(head)
        for enc in encoders:
            if enc not in per_enc:
                continue
            s = per_enc[enc]
            if "error" in s and len(s) == 1:
                print(f"{enc:<10} failed: {s['error'][:100]}")
                continue
            print(f"{enc:<10} " + " ".join(f"{fmt(s.get(m)):>22}" for m in metrics)
                  + f" {s['epochs']['mean']:>8.1f} {s['global_step']['mean']:>8.0f}")
    print("\n== efficiency (batch 64, forward + backward + AdamW step) ==")
    print(f"{'zoo':<5} {'encoder':<10} {'params':>12} {'nets/s':>10} {'peak MB':>9}")
    for zk, per_enc in eff.items():
        for enc in encoders:
            e = per_enc.get(enc)
            if e is None:
                continue
            if "error" in e:
                print(f"{zk:<5} {enc:<10} failed: {e['error'][:90]}")
                continue
            peak = "-" if e["peak_mb"] is None else f"{e['peak_mb']:.1f}"
            print(f"{zk:<5} {enc:<10} {e['params']:>12,} {e['nets_per_s']:>10.1f} {peak:>9}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny zoos built here, short budget (smoke run)")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock seconds per run (default 120; quick 1)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per (task, encoder) (default 3; quick 2)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--encoders", nargs="+", default=list(ENCODER_CONFIGS))
    ap.add_argument("--inr-zoo", help="digits-inr zoo directory")
    ap.add_argument("--cnn-zoo", help="digits-cnn zoo directory")
    ap.add_argument("--mlp-zoo", help="digits-mlp zoo directory")
    ap.add_argument("--hidden", type=int, default=None,
                    help="override every encoder's `hidden` width (default: the encoder configs; quick: 8)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: the task's)")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds are first_seed .. first_seed + seeds - 1")
    ap.add_argument("--augment", default=None,
                    help="train-only augmentation recipe for every run (a configs/train/augment option; default none)")
    ap.add_argument("--skip-training", action="store_true",
                    help="only efficiency and noise ceilings; keep the training runs already in --out")
    ap.add_argument("--runs-dir", help="keep run directories here (default: a temporary directory)")
    ap.add_argument("--out", help="results file (default benchmarks/results/encoders.json; "
                    "--quick: encoders_quick.json, so a smoke run never replaces full results)")
    args = ap.parse_args(argv)
    budget = args.budget_s if args.budget_s is not None else (1.0 if args.quick else 120.0)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)
    device = torch.device(args.device)
    hidden = args.hidden if args.hidden is not None else (8 if args.quick else None)
    if hidden is not None:
        HIDDEN["hidden"] = hidden
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")

    tmp = tempfile.TemporaryDirectory(prefix="wspace-bench-")
    runs_dir = Path(args.runs_dir or tmp.name)
    needed = sorted({TASKS[t][1] for t in args.tasks})
    zoos: dict[str, str] = {}
    for zk in needed:
        path = getattr(args, f"{zk}_zoo")
        if path is None:
            if not args.quick:
                preset = QUICK_ZOOS[zk][0]
                ap.error(f"--{zk}-zoo is required (build it with: wspace zoo build zoo={preset} out=zoos/{preset}), "
                         "or use --quick")
            preset, over = QUICK_ZOOS[zk]
            path = str(build_zoo(preset, Path(tmp.name) / "zoos" / zk, size="small", overrides=over, progress=False))
        zoos[zk] = path
    encoders = available_encoders(args.encoders)
    print(f"encoders: {', '.join(encoders)}; tasks: {', '.join(args.tasks)}; budget {budget:g} s x {seeds} seeds; "
          f"device {device}" + (f"; hidden={hidden}" if hidden is not None else "")
          + (f"; augment={args.augment}" if args.augment else ""))

    # data modules: one per zoo, for facts and efficiency (fit() builds its own with the same split)
    dms = {zk: ZooDataModule(p, target="class" if zk == "inr" else "test_acc") for zk, p in zoos.items()}
    zoo_meta = {zk: {"path": p, "spec": dms[zk].spec.describe(), "spec_id": dms[zk].spec_id,
                     "split_by": dms[zk].split_by, "sizes": dms[zk].split_sizes()} for zk, p in zoos.items()}

    eff: dict = {}
    steps, warmup = (3, 1) if args.quick else (20, 3)
    for zk in needed:
        for enc in encoders:
            try:
                eff.setdefault(zk, {})[enc] = efficiency(enc, dms[zk], 10 if zk == "inr" else 1, device, steps, warmup)
            except (WeightSpaceError, RuntimeError) as e:  # unsupported spec, out of memory
                eff.setdefault(zk, {})[enc] = {"error": str(e).splitlines()[0]}

    published: dict = {}
    if "inr" in needed and not args.quick:
        for enc, (width, theirs) in PUBLISHED_INR_THROUGHPUT.items():
            if enc in encoders:
                e = efficiency(enc, dms["inr"], 10, device, steps, warmup, width=width)
                published[enc] = {"hidden": width, "nets_per_s": e["nets_per_s"], "published_nets_per_s": theirs,
                                  "ratio": e["nets_per_s"] / theirs}
                print(f"  {enc} at the published width {width}: {e['nets_per_s']:.0f} INRs/s vs published "
                      f"{theirs:.0f}/s = {e['nets_per_s'] / theirs:.1f}x (target 5x)")
    ceiling = {key: noise_ceiling(dms[TASKS[key][1]]) for key in args.tasks if TASKS[key][0] == "generalization"}
    for key, c in ceiling.items():
        print(f"  noise ceiling {key}: {c['proxy']} -> Kendall tau {c['kendall_tau']:.3f}, R^2 {c['r2']:.3f} "
              f"({c['n']} test networks, {100 * c['frac_below_0.2']:.0f}% below 0.2 accuracy)")
    out_file = Path(args.out or ROOT / "results" / ("encoders_quick.json" if args.quick else "encoders.json"))
    if args.skip_training:
        old = json.loads(out_file.read_text()) if out_file.exists() else {}
        for zk, per_enc in eff.items():
            old.setdefault("efficiency", {}).setdefault(zk, {}).update(per_enc)
        old.setdefault("ceiling", {}).update(ceiling)
        old.setdefault("vs_published", {}).update(published)
        old.setdefault("meta", {})["efficiency_threads"] = torch.get_num_threads()
        print_tables(old.get("summary", {}), old["efficiency"], encoders)
        out_file.write_text(json.dumps(old, indent=1, default=str))
        print(f"\nupdated efficiency and ceilings in {out_file}")
        tmp.cleanup()
        return old

    runs: list[dict] = []
    t_all = time.perf_counter()
    for key in args.tasks:
        task, zk, _, _ = TASKS[key]
        for enc in encoders:
            if task == "inr_editing" and not has_equivariant(enc):
                continue
            for seed in range(args.first_seed, args.first_seed + seeds):
                out = runs_dir / key / enc / f"seed{seed}"
                extra = {} if args.patience is None else {"patience": args.patience}
                rec = {"task": key, "encoder": enc, "seed": seed}
                try:
                    over = ["resume=false"] + ([f"augment={args.augment}"] if args.augment else [])
                    m = fit(task, enc, zoos[zk], out, seed=seed, device=str(device), overrides=over,
                            encoder_kwargs=dict(HIDDEN),
                            trainer={"max_time": {"seconds": budget}, "max_epochs": -1, "enable_progress_bar": False,
                                     "enable_model_summary": False}, **extra)
                    rec.update({k: v for k, v in m.items() if k.startswith("test/")})
                    rec.update(epochs=m["epochs"], global_step=m["global_step"], fit_time_s=m["fit_time_s"],
                               num_parameters=m["num_parameters"], best_val=m["best_val"])
                except (WeightSpaceError, RuntimeError) as e:
                    rec["error"] = str(e).splitlines()[0]
                runs.append(rec)
                shown = {k: round(v, 4) for k, v in rec.items() if k.startswith("test/")}
                print(f"  {key:<8} {enc:<9} seed {seed}: {rec.get('error') or shown}", flush=True)
    summary = summarize(runs)
    print_tables(summary, eff, encoders)
    result = {
        "meta": {"quick": args.quick, "budget_s": budget, "augment": args.augment, "seeds": seeds, "device": str(device),
                 "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                 "torch": torch.__version__, "hidden_override": hidden, "threads": torch.get_num_threads(), "zoos": zoo_meta,
                 "encoders": {e: encoder_config(e) for e in encoders},
                 "total_s": round(time.perf_counter() - t_all, 1)},
        "summary": summary, "efficiency": eff, "ceiling": ceiling, "vs_published": published, "runs": runs,
    }
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {out_file}")
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
