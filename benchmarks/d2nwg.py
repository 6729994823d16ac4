"""D2NWG benchmark: task-conditioned weight generation on the digits-tasks zoo.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/d2nwg.py --quick      # tiny, ~2 min
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/d2nwg.py              # full zoo, <= 25 min on 2 cores
    ... --zoo <dir>   reuse a built digits-tasks zoo (else it is built under --work)

Measures, on held-out tasks (class subsets never seen in training) and on seen tasks:
zero-shot accuracy of generated networks (mean, median, best-of-n with n chosen on the
task's training samples, never the test split); accuracy after 1, 5, 20, 100 (and 200,
450) fine-tuning steps, all networks fine-tuned at once, against (a) PyTorch default
init, (b) the zoo networks of the most similar training task (retrieval), (c) the
aligned average of zoo networks; steps to reach 95% of the trained accuracy. Also the
VAE's reconstruction accuracy, the sampling speed of DDPM-1000 vs DDIM / DPM-Solver, a
harder split (tasks that put some class in an output position never seen with it in
training), and a CNN zoo (digits-cnn) to show the pipeline is not MLP-specific.
Writes ``benchmarks/results/d2nwg.json`` (``--quick``: ``d2nwg_quick.json``) and prints a table.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasets_zoo import Zoo  # noqa: E402
from datasets_zoo.build import build_zoo  # noqa: E402
from wspace.families import init_weight_space  # noqa: E402
from datasets_zoo.tasks import get_task  # noqa: E402
from generators import evaluate as E  # noqa: E402
from generators.d2nwg import train_d2nwg  # noqa: E402
from generators.probe import fit_readout  # noqa: E402
from wspace.space import WeightSpace  # noqa: E402

FT_STEPS = [0, 1, 5, 20, 100, 200, 450]

MODES = {
    "quick": dict(
        zoo_over={"tasks": {"limit": 24}, "search": {"seeds": 4}, "epochs": 10, "save_epochs": [10],
                  "batch_size": 32},
        gen=dict(vae={"steps": 300}, denoiser={"steps": 400, "warmup": 30}, checkpoint_every=1000),
        hard_gen=dict(vae={"steps": 200}, denoiser={"steps": 200, "warmup": 30}, checkpoint_every=1000),
        n_held=6, n_seen=4, n_samples=8, ft_steps=[0, 1, 5, 20, 100], speed_n=8, hard_tasks=6,
        cnn_over={"search": {"runs": 24}, "epochs": 5, "save_epochs": [5]},
        cnn_gen=dict(vae={"steps": 100, "latent_dim": 32}, denoiser={"steps": 100, "warmup": 10},
                     checkpoint_every=1000),
    ),
    "full": dict(
        zoo_over=None,
        gen=dict(data={"epochs": [10, 20]}),  # the step counts of configs/train/generator/d2nwg.yaml
        hard_gen=dict(data={"epochs": [10, 20]}, vae={"steps": 400}, denoiser={"steps": 1200}),
        n_held=20, n_seen=10, n_samples=16, ft_steps=FT_STEPS, speed_n=32, hard_tasks=20,
        cnn_over={"search": {"runs": 256}, "epochs": 10, "save_epochs": [10]},
        cnn_gen=dict(vae={"steps": 600, "latent_dim": 32}, denoiser={"steps": 800}),
    ),
}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _stats(acc: torch.Tensor) -> dict:
    return {"mean": round(float(acc.mean()), 4), "median": round(float(acc.median()), 4),
            "min": round(float(acc.min()), 4), "max": round(float(acc.max()), 4)}


def _final_epoch(zoo: Zoo) -> int:
    return max(r["epoch"] for r in zoo.records)


def _random_init(spec, n: int, seed: int) -> WeightSpace:
    return init_weight_space(spec, n, generator=torch.Generator().manual_seed(seed), scheme="default")


def _best_of_n(ws: WeightSpace, tasks: list[str], n_max: int) -> dict:
    """best-of-n: n chosen by the accuracy of the selected networks on the tasks' training
    samples (validation), the reported number is their test accuracy."""
    cands = [n for n in (1, 2, 4, 8, 16, 32) if n <= n_max]
    names = [t for t in tasks for _ in range(n_max)]
    val = E.accuracy(ws, names, "train").view(len(tasks), n_max)
    scores = {n: float(val[:, :n].max(1).values.mean()) for n in cands}
    n_best = max(cands, key=lambda n: (round(scores[n], 6), -n))
    return {"n": n_best, "test_acc": round(float(E.best_of_n(ws, tasks, n_best).mean()), 4),
            "val_acc": round(scores[n_best], 4)}


def evaluate_tasks(pipe, zoo: Zoo, tasks: list[str], train_tasks: list[str], n: int, ft_steps: list[int],
                   seed: int, avg: WeightSpace) -> dict:
    """Zero-shot and fine-tuning comparison on ``tasks``."""
    ep = _final_epoch(zoo)
    g = torch.Generator().manual_seed(seed)
    ridge = float(pipe.config["condition"]["probe_ridge"])
    default_readout = pipe.resolve_readout()
    shots = torch.cat([pipe.condition(t, n, generator=g) for t in tasks])  # the support sets sampling sees
    raw = WeightSpace.cat([pipe.sample(shots[i * n:(i + 1) * n], n, generator=g, readout="none")
                           for i in range(len(tasks))])  # the generator's own output layer
    # the default sampling (readout=auto): the output layer refit on the same shots where supported
    gen = fit_readout(raw, shots, ridge) if default_readout == "ridge" else raw
    names = [t for t in tasks for _ in range(n)]
    trained = zoo.filter(task=tasks, epoch=ep)
    trained_acc = torch.tensor(trained.column("test_acc"))
    retr, retr_names = [], []
    for t in tasks:
        best, w = E.retrieval_baseline(zoo, t, train_tasks, k=n, epoch=ep)
        retr.append(w)
        retr_names.append(best)
    retr_ws = WeightSpace.cat(retr).to(torch.float32)
    retr_eval_names = [t for t, w in zip(tasks, retr) for _ in range(len(w))]
    rand = _random_init(pipe.spec, len(gen), seed + 1)
    avg_ws = WeightSpace.cat([avg] * len(tasks))
    res = {"tasks": tasks, "trained": _stats(trained_acc), "retrieved_from": retr_names,
           "default_readout": default_readout,
           # attribution of the support-set fitting step: the same ridge readout on random hidden layers,
           # and the generator's own output layer without it
           "support_set_readout": {"generated_without_readout": _stats(E.accuracy(raw, names)),
                                   "random+ridge": _stats(E.accuracy(fit_readout(rand, shots, ridge), names))},
           "zero_shot": {"generated": _stats(E.accuracy(gen, names)), "best_of_n": _best_of_n(gen, tasks, n),
                         "random_init": _stats(E.accuracy(rand, names)),
                         "retrieval": _stats(E.accuracy(retr_ws, retr_eval_names)),
                         "aligned_average": _stats(E.accuracy(avg_ws, tasks))}}
    # fine-tuning: every population in one vectorized run
    pops = {"generated": (gen, names), "random_init": (rand, names), "retrieval": (retr_ws, retr_eval_names),
            "aligned_average": (avg_ws, list(tasks))}
    all_ws = WeightSpace.cat([w for w, _ in pops.values()])
    all_names = [x for _, nm in pops.values() for x in nm]
    curve = E.finetune_curve(all_ws, all_names, ft_steps, seed=seed)
    ft, a = {}, 0
    target = 0.95 * float(trained_acc.mean())
    for k, (w, _) in pops.items():
        part = {s: c[a:a + len(w)] for s, c in curve.items()}
        a += len(w)
        ft[k] = {str(s): round(float(v.mean()), 4) for s, v in part.items()}
        ft[k]["steps_to_95pct_trained"] = E.steps_to_reach(part, target)
    res["finetune"] = ft
    sg, sr = ft["generated"]["steps_to_95pct_trained"], ft["random_init"]["steps_to_95pct_trained"]
    res["speedup_to_95pct"] = None if sg is None or sr is None else round(sr / max(sg, 1), 2)
    return res


def hard_split(zoo: Zoo, k: int) -> tuple[list[str], tuple[int, int]]:
    """Tasks putting class c in output position p, for the (c, p) pair (seen in at most ~20%
    of the zoo's tasks) whose removal keeps class c in training at other positions."""
    tasks = sorted(set(zoo.column("task")))
    pairs = Counter((c, p) for t in tasks for p, c in enumerate(get_task(t).classes))
    target = max(2, round(0.2 * len(tasks)))
    cands = [(abs(cnt - target), c, p) for (c, p), cnt in pairs.items()
             if any(c in get_task(t).classes and get_task(t).classes.index(c) != p for t in tasks)]
    _, c, p = min(cands)
    held = [t for t in tasks if get_task(t).classes[p] == c]
    return held[:k], (c, p)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--zoo", default=None, help="an existing digits-tasks zoo (full mode)")
    ap.add_argument("--work", default=None, help="working directory (default: .wspace/bench/d2nwg[-quick])")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: canonical,hard,cnn,speed")
    ap.add_argument("--results", help="name of the JSON under benchmarks/results (default: d2nwg, d2nwg_quick "
                                      "with --quick)")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    mode = "quick" if args.quick else "full"
    M = MODES[mode]
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.work or f".wspace/bench/d2nwg{'-quick' if args.quick else ''}")
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    timings: dict[str, float] = {}
    res: dict = {"mode": mode, "seed": args.seed, "threads": torch.get_num_threads()}

    # ---------------------------------------------------------------- zoo
    t = time.time()
    zoo_dir = Path(args.zoo) if args.zoo else work / "zoo"
    if not args.zoo:
        build_zoo("digits-tasks", zoo_dir, size="small" if args.quick else "full", overrides=M["zoo_over"],
                  progress=False)
    zoo = Zoo.open(zoo_dir)
    timings["zoo"] = time.time() - t
    ep = _final_epoch(zoo)
    train_tasks = sorted({r["task"] for r in zoo.records if r.get("split") == "train"})
    held_tasks = sorted({r["task"] for r in zoo.records if r.get("split") == "heldout"})
    _log(f"zoo: {len(zoo)} checkpoints, {len(train_tasks)} train / {len(held_tasks)} held-out tasks")

    # ---------------------------------------------------------------- generator
    t = time.time()
    pipe = train_d2nwg(zoo, work / "gen", seed=args.seed, **M["gen"])
    timings["train"] = time.time() - t
    _log(f"trained {pipe!r} in {timings['train']:.0f}s")

    # aligned average of the zoo's final training networks (one per seed of every task)
    t = time.time()
    final_train = zoo.filter(split="train", epoch=ep)
    avg = E.aligned_average(final_train.weights().to(torch.float32), k=min(len(final_train), 256))
    timings["aligned_average"] = time.time() - t

    # ---------------------------------------------------------------- VAE reconstruction
    sub = final_train.select(range(0, len(final_train), max(1, len(final_train) // 128)))
    ws = sub.weights().to(torch.float32)
    names = sub.column("task")
    res["vae_reconstruction"] = {"original": _stats(E.accuracy(ws, names)),
                                 "reconstructed": _stats(E.accuracy(pipe.reconstruct(ws), names)), "n": len(ws)}
    _log(f"VAE reconstruction: {res['vae_reconstruction']}")

    # ---------------------------------------------------------------- held-out and seen tasks
    t = time.time()
    held = held_tasks[: M["n_held"]]
    seen = train_tasks[:: max(1, len(train_tasks) // M["n_seen"])][: M["n_seen"]]
    res["heldout"] = evaluate_tasks(pipe, zoo, held, train_tasks, M["n_samples"], M["ft_steps"], args.seed, avg)
    _log(f"held-out zero-shot: {res['heldout']['zero_shot']}")
    res["seen"] = evaluate_tasks(pipe, zoo, seen, train_tasks, M["n_samples"], M["ft_steps"], args.seed + 1, avg)
    _log(f"seen zero-shot: {res['seen']['zero_shot']}")
    timings["evaluate"] = time.time() - t

    # ---------------------------------------------------------------- canonicalized zoo
    if "canonical" not in skip:  # the same generator on a zoo aligned to one reference first
        t = time.time()
        gen_cfg = copy.deepcopy(M["gen"])
        gen_cfg["tokenizer"] = {**gen_cfg.get("tokenizer", {}), "canonicalize": True}
        pipe_c = train_d2nwg(zoo, work / "gen-canonical", seed=args.seed, **gen_cfg)
        g = torch.Generator().manual_seed(args.seed)
        gen_c = WeightSpace.cat([pipe_c.sample(t_, M["n_samples"], generator=g) for t_ in held])
        acc_c = E.accuracy(gen_c, [t_ for t_ in held for _ in range(M["n_samples"])])
        res["canonicalized"] = {"heldout_zero_shot": _stats(acc_c),
                                "without": res["heldout"]["zero_shot"]["generated"]}
        timings["canonical"] = time.time() - t
        _log(f"canonicalized zoo, held-out zero-shot: {res['canonicalized']}")

    # ---------------------------------------------------------------- sampling speed
    if "speed" not in skip:
        t = time.time()
        n = M["speed_n"]
        speed = {}
        tasks = held[:2]
        for name, kw in (("ddpm-1000", dict(sampler="ddpm", num_inference_steps=1000)),
                         ("ddim-50", dict(sampler="ddim", num_inference_steps=50)),
                         ("dpm-25", dict(sampler="dpm", num_inference_steps=25))):
            accs, secs = [], 0.0
            for tk in tasks:
                t0 = time.perf_counter()
                w = pipe.sample(tk, n, generator=torch.Generator().manual_seed(5), **kw)
                secs += time.perf_counter() - t0
                accs.append(E.accuracy(w, tk))
            speed[name] = {"models_per_s": round(n * len(tasks) / secs, 2),
                           "acc_mean": round(float(torch.cat(accs).mean()), 4)}
        base = speed["ddpm-1000"]
        for k in ("ddim-50", "dpm-25"):
            speed[k]["speedup"] = round(speed[k]["models_per_s"] / base["models_per_s"], 1)
            speed[k]["acc_diff_vs_ddpm"] = round(speed[k]["acc_mean"] - base["acc_mean"], 4)
        res["sampling_speed"] = speed
        timings["speed"] = time.time() - t
        _log(f"sampling speed: {speed}")

    # ---------------------------------------------------------------- harder split
    if "hard" not in skip:
        t = time.time()
        hard, (c, p) = hard_split(zoo, M["hard_tasks"])
        all_tasks = sorted(set(zoo.column("task")))
        hard_all = [x for x in all_tasks if get_task(x).classes[p] == c]
        train_h = [x for x in all_tasks if x not in hard_all]
        over = json.loads(json.dumps(M["hard_gen"]))
        over.setdefault("data", {}).update({"tasks": train_h, "split": None})
        pipe_h = train_d2nwg(zoo, work / "gen-hard", seed=args.seed, **over)
        avg_h = E.aligned_average(zoo.filter(task=train_h, epoch=ep).weights().to(torch.float32), k=256)  # k clamped
        r = evaluate_tasks(pipe_h, zoo, hard, train_h, M["n_samples"], [0, 5, 20, 100], args.seed + 2, avg_h)
        res["hard_split"] = {"class": c, "position": p, "n_train_tasks": len(train_h), **r}
        timings["hard"] = time.time() - t
        _log(f"hard split (class {c} at output {p} never in training): {r['zero_shot']}")

    # ---------------------------------------------------------------- CNN zoo
    if "cnn" not in skip:
        t = time.time()
        cdir = work / "zoo-cnn"
        build_zoo("digits-cnn", cdir, size="small", overrides=M["cnn_over"], progress=False)
        czoo = Zoo.open(cdir)
        pc = train_d2nwg(czoo, work / "gen-cnn", seed=args.seed, **M["cnn_gen"])
        w = pc.sample("digits@image", M["n_samples"], generator=torch.Generator().manual_seed(3))
        czoo = czoo.filter(spec_id=[r["spec_id"] for r in czoo.records if czoo.specs[r["spec_id"]].fingerprint == pc.spec.fingerprint][:1])
        zacc = torch.tensor(czoo.column("test_acc"))
        res["cnn"] = {"spec": pc.spec.describe(), "zoo_checkpoints": len(czoo), "zoo": _stats(zacc),
                      "generated": _stats(E.accuracy(w, "digits@image")),
                      "random_init": _stats(E.accuracy(_random_init(pc.spec, M["n_samples"], 9), "digits@image"))}
        timings["cnn"] = time.time() - t
        _log(f"CNN: {res['cnn']}")

    timings["total"] = time.time() - t_all
    res["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    out = Path(__file__).resolve().parent / "results" / f"{args.results or ('d2nwg_quick' if args.quick else 'd2nwg')}.json"
    out.write_text(json.dumps(res, indent=2))
    print(table(res))
    _log(f"results written to {out}")
    return res


def table(res: dict) -> str:
    rows = ["| split | trained | generated mean / median | best-of-n (n) | retrieval | aligned avg | random | "
            "gen ft@5 | rand ft@5 | gen ft@20 | rand ft@20 | steps to 95% gen / rand |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in ("heldout", "seen", "hard_split"):
        if key not in res:
            continue
        r = res[key]
        z, ft = r["zero_shot"], r["finetune"]
        rows.append(
            f"| {key} | {r['trained']['mean']:.3f} | {z['generated']['mean']:.3f} / {z['generated']['median']:.3f} | "
            f"{z['best_of_n']['test_acc']:.3f} ({z['best_of_n']['n']}) | {z['retrieval']['mean']:.3f} | "
            f"{z['aligned_average']['mean']:.3f} | {z['random_init']['mean']:.3f} | "
            f"{ft['generated'].get('5', float('nan')):.3f} | {ft['random_init'].get('5', float('nan')):.3f} | "
            f"{ft['generated'].get('20', float('nan')):.3f} | {ft['random_init'].get('20', float('nan')):.3f} | "
            f"{ft['generated']['steps_to_95pct_trained']} / {ft['random_init']['steps_to_95pct_trained']} |")
    v = res["vae_reconstruction"]
    rows.append(f"\nVAE reconstruction: {v['original']['mean']:.4f} -> {v['reconstructed']['mean']:.4f}")
    if "sampling_speed" in res:
        rows.append("sampling: " + ", ".join(f"{k}: {s['models_per_s']} models/s, acc {s['acc_mean']:.3f}"
                                             for k, s in res["sampling_speed"].items()))
    if "canonicalized" in res:
        c = res["canonicalized"]
        rows.append(f"held-out zero-shot with the zoo canonicalized first: {c['heldout_zero_shot']['mean']:.3f} "
                    f"(without: {c['without']['mean']:.3f})")
    if "cnn" in res:
        c = res["cnn"]
        rows.append(f"CNN ({c['spec']}): zoo {c['zoo']['mean']:.3f}, generated {c['generated']['mean']:.3f}, "
                    f"random {c['random_init']['mean']:.3f}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
