"""Generation beyond one hidden layer: D2NWG per architecture of a multi-architecture task zoo.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/generation.py --quick          # small zoo, minutes
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/generation.py --zoo <dir>      # a built digits-tasks-multi
    ... --inr-zoo <dir>   reuse a built digits-inr zoo for the unconditional part (else a small one is built)
    ... --architectures A B --results part1   then   --merge part1 part2   (parallel processes)

For every architecture of the zoo (records' ``architecture``), one D2NWG pipeline is
trained on that architecture's training split, and on held-out tasks (class subsets never
seen with any architecture) it reports the zero-shot test accuracy of

* generated weights as the generator drew them (``readout="none"``: its own output layer;
  mean over samples, and best-of-n selected by accuracy on the task's support set, the
  shots the generator was conditioned on);
* the trained zoo networks of that task (upper reference), retrieval (the zoo networks of
  the most similar training task), the aligned mean of the zoo, random init;
* attribution of the support-set fitting step: the output layer refit by ridge regression
  on the same support set (what ``sample`` does by default, ``readout="auto"``), applied
  to the generated weights, to random hidden layers and to the retrieved networks (random
  features + a fitted readout is a strong baseline on digits), next to the generator
  without it;

plus accuracy after 1, 5 and 20 fine-tuning epochs (default samples, samples without the
readout, random init, random + ridge, retrieval), steps to 95% of the trained accuracy, the VAE round trip with the behaviour
loss and structure-only, held-out (task, architecture) pairs, the audit verdicts of the
samples against the training networks, training and sampling time. An unconditional
pipeline is trained on an INR zoo and its samples' PSNR compared with the zoo's.

Writes ``benchmarks/results/generation.json`` (``--quick``: ``generation_quick.json``), a
plot ``generation.png`` next to it, and prints a table. ``--reaudit --zoo Z --work W``
audits the same samples again with the current audit (redrawn from the pipelines saved
under ``W``) and replaces only the audit entries.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasets_zoo import Zoo  # noqa: E402
from datasets_zoo.build import build_zoo  # noqa: E402
from datasets_zoo.tasks import get_task  # noqa: E402
from generators import evaluate as E  # noqa: E402
from generators.d2nwg import train_d2nwg  # noqa: E402
from generators.probe import fit_readout  # noqa: E402
from wspace.families import init_weight_space  # noqa: E402
from wspace.functional import forward  # noqa: E402
from wspace.space import WeightSpace  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

MODES = {
    "quick": dict(zoo_size="small", epochs=None, n_held=3, n_pairs=2, n=8, ft_epochs=[1, 5],
                  gen=dict(vae={"steps": 200}, denoiser={"steps": 200, "warmup": 20}, checkpoint_every=10_000),
                  inr_size="small", inr_gen=dict(vae={"steps": 200}, denoiser={"steps": 200, "warmup": 20},
                                                 checkpoint_every=10_000)),
    "full": dict(zoo_size="full", epochs=[20, 40], n_held=10, n_pairs=6, n=16, ft_epochs=[1, 5, 20],
                 gen=dict(checkpoint_every=10_000),  # the defaults of configs/train/generator/d2nwg.yaml
                 # 100 digits x 2 affine variants per split, fitted to convergence (30 dB): 400 training SIRENs
                 inr_size="full", inr_overrides={"inr": {"variants": 2, "images_per_split": 100}},
                 inr_gen=dict(checkpoint_every=10_000)),
}
BATCH = 32


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _stats(acc: torch.Tensor) -> dict:
    acc = acc.float()
    return {"mean": round(float(acc.mean()), 4), "median": round(float(acc.median()), 4),
            "min": round(float(acc.min()), 4), "max": round(float(acc.max()), 4)}


def _support_accuracy(ws: WeightSpace, shots: torch.Tensor) -> torch.Tensor:
    """``[B]`` accuracy of every network on its own support set ``[B, K, S, *input]``."""
    B, K, S = shots.shape[:3]
    x = shots.reshape(B, K * S, *shots.shape[3:])
    y = torch.arange(K).repeat_interleave(S)
    with torch.no_grad():
        pred = forward(ws.spec, ws.tensors, x).argmax(-1)
    return (pred == y).float().mean(1)


def _final_records(zoo: Zoo, arch: str, split: str) -> list[int]:
    recs = zoo.records
    last = max(r["epoch"] for r in recs if r.get("architecture") == arch)
    return [i for i, r in enumerate(recs) if r.get("architecture") == arch and r.get("split") == split
            and r["epoch"] == last]


def evaluate_architecture(zoo: Zoo, arch: str, work: Path, mode: dict, seed: int) -> dict:
    """Train D2NWG (and a structure-only VAE) for ``arch`` and evaluate it."""
    recs = zoo.records
    train_idx = _final_records(zoo, arch, "train")
    train_tasks = sorted({recs[i]["task"] for i in train_idx})
    held_idx = _final_records(zoo, arch, "heldout")
    held_tasks = sorted({recs[i]["task"] for i in held_idx})[: mode["n_held"]]
    pair_idx = _final_records(zoo, arch, "heldout_pair")
    pair_tasks = sorted({recs[i]["task"] for i in pair_idx})[: mode["n_pairs"]]
    data = {"architecture": arch, "split": "train", "epochs": mode["epochs"]}
    res: dict = {"architecture": arch, "train_checkpoints": len(train_idx), "train_tasks": len(train_tasks)}

    t0 = time.time()
    pipe = train_d2nwg(zoo, work / f"d2nwg-{arch}", seed=seed, data=data, **mode["gen"])
    res["train_seconds"] = round(time.time() - t0, 1)
    res["spec"] = pipe.spec.describe()
    _log(f"{arch}: trained in {res['train_seconds']} s ({pipe})")
    struct_over = {**mode["gen"], "vae": {**mode["gen"].get("vae", {}), "behaviour_weight": 0.0},
                   "denoiser": {**mode["gen"].get("denoiser", {}), "steps": 1, "warmup": 0}}
    t0 = time.time()
    struct = train_d2nwg(zoo, work / f"d2nwg-{arch}-structure-only", seed=seed, data=data, **struct_over)
    res["structure_only_vae_seconds"] = round(time.time() - t0, 1)

    # VAE round trip on training networks (accuracy on their own tasks)
    rt = train_idx[:128]
    ws = zoo.weights(rt).to(torch.float32)
    names = [recs[i]["task"] for i in rt]
    res["round_trip"] = {"original": _stats(E.accuracy(ws, names)),
                         "behaviour_vae": _stats(E.accuracy(pipe.reconstruct(ws), names)),
                         "structure_only_vae": _stats(E.accuracy(struct.reconstruct(ws), names))}
    _log(f"{arch}: round trip {res['round_trip']['original']['mean']:.4f} -> behaviour "
         f"{res['round_trip']['behaviour_vae']['mean']:.4f}, structure-only "
         f"{res['round_trip']['structure_only_vae']['mean']:.4f}")

    res["heldout"] = _zero_shot(pipe, zoo, arch, held_tasks, train_tasks, mode, seed, finetune=True)
    if pair_tasks:
        res["heldout_pairs"] = _zero_shot(pipe, zoo, arch, pair_tasks, train_tasks, mode, seed + 7,
                                          finetune=False, split="heldout_pair")
    return res


def _draw(pipe, task: str, n: int, seed: int, k: int) -> tuple[torch.Tensor, WeightSpace]:
    """(support set, ``n`` samples as drawn) for the ``k``-th evaluated task: one support set
    per task, shared by its samples, from the task's own seed (``--reaudit`` redraws them)."""
    g = torch.Generator().manual_seed(seed * 1000 + k)
    one = pipe.condition(task, 1, generator=g)
    support = one.expand(n, *one.shape[1:]).contiguous()
    return support, pipe.sample(support, n, generator=g, readout="none")  # the generator's own output layer


def _zero_shot(pipe, zoo: Zoo, arch: str, tasks: list[str], train_tasks: list[str], mode: dict, seed: int,
               finetune: bool, split: str = "heldout") -> dict:
    n = mode["n"]
    recs = zoo.records
    spec = pipe.spec
    gens, ridge_gen, rand, ridge_rand, retr, ridge_retr, best, best_ridge, sample_s = [], [], [], [], [], [], [], [], 0.0
    trained = []
    idx_split = _final_records(zoo, arch, split)
    ridge = float(pipe.config["condition"]["probe_ridge"])  # the strength sampling's readout=ridge uses

    def best_on_support(w: WeightSpace, support: torch.Tensor, task: str) -> float:
        sel = int(_support_accuracy(w, support).argmax())
        return float(E.accuracy(w.map(lambda t: t[sel:sel + 1]), task)[0])

    for k, task in enumerate(tasks):
        t0 = time.time()
        support, w = _draw(pipe, task, n, seed, k)
        sample_s += time.time() - t0
        gens.append(w)
        ridge_gen.append(fit_readout(w, support, ridge))  # = readout=ridge
        best.append(best_on_support(w, support, task))
        best_ridge.append(best_on_support(ridge_gen[-1], support, task))
        r = init_weight_space(spec, n, generator=torch.Generator().manual_seed(seed + k), scheme="default")
        rand.append(r)
        ridge_rand.append(fit_readout(r, support, ridge))
        _, rt = E.retrieval_baseline(zoo.filter(architecture=arch), task, train_tasks, k=n)
        rt = rt.to(torch.float32)
        if len(rt) < n:
            rt = WeightSpace.cat([rt] * math.ceil(n / len(rt))).map(lambda t: t[:n])
        retr.append(rt)
        ridge_retr.append(fit_readout(rt, support, ridge))
        trained += [i for i in idx_split if recs[i]["task"] == task]
    names = [t for t in tasks for _ in range(n)]
    cat = WeightSpace.cat
    avg = E.aligned_average(zoo.weights(_final_records(zoo, arch, "train")[:64]).to(torch.float32))
    out = {"tasks": tasks, "samples_per_task": n, "default_readout": pipe.resolve_readout(),
           "trained": _stats(torch.tensor([recs[i]["metrics"]["test_acc"] for i in trained])),
           "zero_shot": {  # no fitting step: the networks as they are
               "generated": _stats(E.accuracy(cat(gens), names)),
               f"best_of_{n}_on_support": _stats(torch.tensor(best)),
               "retrieval": _stats(E.accuracy(cat(retr), names)),
               "mean_of_zoo": _stats(E.accuracy(cat([avg] * len(tasks)), list(tasks))),
               "random_init": _stats(E.accuracy(cat(rand), names)),
           },
           "support_set_readout": {  # the same ridge fit on the support set, on three kinds of hidden layers
               "generated+ridge": _stats(E.accuracy(cat(ridge_gen), names)),
               f"generated+ridge_best_of_{n}_on_support": _stats(torch.tensor(best_ridge)),
               "random+ridge": _stats(E.accuracy(cat(ridge_rand), names)),
               "retrieval+ridge": _stats(E.accuracy(cat(ridge_retr), names)),
           },
           "sampling_seconds_per_model": round(sample_s / max(1, n * len(tasks)), 4)}
    z = out["zero_shot"]
    _log(f"{arch} {split}: trained {out['trained']['mean']:.4f}, generated {z['generated']['mean']:.4f}, "
         f"best-of-{n} {z[f'best_of_{n}_on_support']['mean']:.4f}, retrieval {z['retrieval']['mean']:.4f}, "
         f"random {z['random_init']['mean']:.4f}; +ridge: gen {out['support_set_readout']['generated+ridge']['mean']:.4f}"
         f" random {out['support_set_readout']['random+ridge']['mean']:.4f} retrieval "
         f"{out['support_set_readout']['retrieval+ridge']['mean']:.4f}")
    if finetune:
        pops = {"generated+ridge (default sampling)": cat(ridge_gen), "generated": cat(gens),
                "random_init": cat(rand), "random+ridge": cat(ridge_rand), "retrieval": cat(retr)}
        out["finetune"] = _finetune(pops, names, mode, seed, float(out["trained"]["mean"]))
    if split == "heldout":
        out["audit"] = _audit(cat(ridge_gen), zoo, arch, tasks[0])
    return out


def _finetune(pops: dict[str, WeightSpace], names: list[str], mode: dict, seed: int, trained: float) -> dict:
    """All populations fine-tuned in one vectorized run (Adam 3e-3, batch 32)."""
    n_train = int((E.pooled_data(names[:1]).y_train >= 0).sum())
    spe = max(1, n_train // BATCH)
    epochs = mode["ft_epochs"]
    grid = sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, *(e * spe for e in epochs)})
    grid = [s for s in grid if s <= max(epochs) * spe]
    curve = E.finetune_curve(WeightSpace.cat(list(pops.values())), names * len(pops), grid, seed=seed)
    out, a = {"steps_per_epoch": spe, "target_95pct_trained": round(0.95 * trained, 4)}, 0
    for k, w in pops.items():
        part = {s: c[a:a + len(w)] for s, c in curve.items()}
        a += len(w)
        out[k] = {f"epoch_{e}": round(float(part[e * spe].mean()), 4) for e in epochs}
        out[k]["step_0"] = round(float(part[0].mean()), 4)
        out[k]["steps_to_95pct_trained"] = E.steps_to_reach(part, 0.95 * trained)
    sr = out["random_init"]["steps_to_95pct_trained"]
    for k in ("generated+ridge (default sampling)", "generated"):
        sg = out[k]["steps_to_95pct_trained"]
        out[k]["speedup_to_95pct_vs_random_init"] = None if sg is None or sr is None else round(sr / max(sg, 1), 2)
        if sg is not None and sr is None:  # random init never got there: the run's length bounds the speedup
            out[k]["speedup_to_95pct_vs_random_init_at_least"] = round(grid[-1] / max(sg, 1), 2)
    return out


def _audit(gen: WeightSpace, zoo: Zoo, arch: str, task: str) -> dict:
    """Audit verdicts of the first task's samples against the architecture's training networks
    (final checkpoints; calibrated by the spread between runs)."""
    from wspace.audit import audit

    n = min(gen.batch_size, 16)
    idx = _final_records(zoo, arch, "train")
    train = zoo.weights(idx).to(torch.float32)
    rep = audit(gen.map(lambda t: t[:n]), train, task=get_task(task), runs=[zoo.records[i]["run"] for i in idx],
                baselines=False, max_reference=64, probe_size=128)
    counts = {v: rep.verdicts.count(v) for v in sorted(set(rep.verdicts))}
    return {"task": task, "samples": len(rep.verdicts), "verdicts": counts, "answer": rep.summary["answer"],
            "rule": rep.thresholds.rule}


def reaudit(stem: str, work: Path, zoo: Zoo, seed: int) -> dict:
    """Audit again, with the current audit, the samples each results entry audited: the
    pipelines saved under ``work`` redraw them (same seeds as the run: the first held-out
    task, its support set, ridge readout) and ``audit`` of the results is replaced."""
    from generators.pipeline import WeightGenerator

    res = json.loads((RESULTS / f"{stem}.json").read_text())
    for arch, r in res["architectures"].items():
        task = r["heldout"]["tasks"][0]
        pipe = WeightGenerator.from_pretrained(work / f"d2nwg-{arch}" / "pipeline")
        n = r["heldout"]["samples_per_task"]
        support, w = _draw(pipe, task, n, seed, 0)
        r["heldout"]["audit"] = _audit(fit_readout(w, support, float(pipe.config["condition"]["probe_ridge"])),
                                       zoo, arch, task)
        _log(f"{arch}: {r['heldout']['audit']['answer']}")
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2))
    return res


def unconditional_inr(work: Path, mode: dict, seed: int, inr_zoo: str | None) -> dict:
    """Train an unconditional D2NWG on an INR zoo; PSNR of samples vs the zoo's."""
    path = Path(inr_zoo) if inr_zoo else build_zoo("digits-inr", work / "digits-inr", size=mode["inr_size"],
                                                   overrides=mode.get("inr_overrides"), progress=False)
    zoo = Zoo.open(path)
    t0 = time.time()
    pipe = train_d2nwg(zoo, work / "d2nwg-inr", seed=seed, data={"split": "train"}, **mode["inr_gen"])
    train_s = time.time() - t0
    n = 64
    samples = pipe.sample(None, n, generator=torch.Generator().manual_seed(seed))
    train_idx = [i for i, r in enumerate(zoo.records) if r.get("split") == "train"]
    ref = zoo.weights(train_idx).to(torch.float32)
    task = get_task(zoo.records[train_idx[0]]["task"])
    coords = task.coords.float()
    with torch.no_grad():
        ref_img = forward(ref.spec, ref.tensors, coords)[..., 0]  # [R, P]: the zoo's renders
        smp_img = forward(samples.spec, samples.tensors, coords)[..., 0]
    mse = torch.cdist(smp_img.double(), ref_img.double()).pow(2) / coords.shape[0]  # [n, R]
    nearest = mse.min(1).values
    psnr = 10 * torch.log10(4.0 / nearest.clamp_min(1e-12))
    zoo_psnr = torch.tensor([zoo.records[i]["metrics"]["psnr"] for i in train_idx])
    finite = torch.isfinite(smp_img).all(1)
    out = {"zoo": str(path), "spec": pipe.spec.describe(), "train_checkpoints": len(train_idx),
           "train_seconds": round(train_s, 1), "samples": n, "finite_samples": int(finite.sum()),
           "zoo_psnr_median_db": round(float(zoo_psnr.median()), 2),
           "sample_psnr_to_nearest_zoo_render_median_db": round(float(psnr.median()), 2),
           "sample_psnr_to_nearest_zoo_render_p10_db": round(float(psnr.quantile(0.1)), 2),
           "definition": "sample PSNR = PSNR of its render against the nearest render of a training INR "
                         "(the zoo's renders are within its own PSNR of the target images); zoo PSNR = each "
                         "training INR against its own target image"}
    out["gap_db"] = round(out["zoo_psnr_median_db"] - out["sample_psnr_to_nearest_zoo_render_median_db"], 2)
    _log(f"INR: zoo median PSNR {out['zoo_psnr_median_db']} dB, samples {out['sample_psnr_to_nearest_zoo_render_median_db']}"
         f" dB (gap {out['gap_db']} dB), trained in {out['train_seconds']} s")
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = [a for a in res["architectures"]]
    keys = [("trained", None), ("generated", "zero_shot"), (f"best_of_{res['samples_per_task']}_on_support",
                                                             "zero_shot"),
            ("generated+ridge", "support_set_readout"), ("random+ridge", "support_set_readout"),
            ("retrieval", "zero_shot"), ("mean_of_zoo", "zero_shot"), ("random_init", "zero_shot")]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(keys)
    for j, (k, grp) in enumerate(keys):
        vals = []
        for a in archs:
            h = res["architectures"][a]["heldout"]
            vals.append(h["trained"]["mean"] if grp is None else h[grp][k]["mean"])
        ax.bar([i + j * width for i in range(len(archs))], vals, width, label=k)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(archs))], archs)
    ax.set_ylabel("held-out task test accuracy (zero-shot)")
    ax.set_ylim(0, 1)
    ax.axhline(0.2, color="grey", lw=0.5, ls=":")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    ax.set_title("D2NWG per architecture on held-out tasks (5-way digits)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(res: dict) -> str:
    n = res["samples_per_task"]
    rows = ["| architecture | trained | generated | best-of-%d | retrieval | mean of zoo | random | gen+ridge | "
            "random+ridge | retrieval+ridge | round trip orig -> behaviour / structure | ft steps to 95%% gen+ridge / rand "
            "| train s |" % n, "|" + "---|" * 13]
    for a, r in res["architectures"].items():
        h = r["heldout"]
        z, s, rt = h["zero_shot"], h["support_set_readout"], r["round_trip"]
        ft = h.get("finetune", {})
        rows.append(
            f"| {a} | {h['trained']['mean']:.3f} | {z['generated']['mean']:.3f} | "
            f"{z[f'best_of_{n}_on_support']['mean']:.3f} | {z['retrieval']['mean']:.3f} | "
            f"{z['mean_of_zoo']['mean']:.3f} | {z['random_init']['mean']:.3f} | {s['generated+ridge']['mean']:.3f} | "
            f"{s['random+ridge']['mean']:.3f} | {s['retrieval+ridge']['mean']:.3f} | "
            f"{rt['original']['mean']:.3f} -> {rt['behaviour_vae']['mean']:.3f} / {rt['structure_only_vae']['mean']:.3f} | "
            f"{ft.get('generated+ridge (default sampling)', {}).get('steps_to_95pct_trained')} / "
            f"{ft.get('random_init', {}).get('steps_to_95pct_trained')} | {r['train_seconds']} |")
    for a, r in res["architectures"].items():
        if "heldout_pairs" in r:
            p = r["heldout_pairs"]
            rows.append(f"held-out pairs {a}: trained {p['trained']['mean']:.3f}, generated "
                        f"{p['zero_shot']['generated']['mean']:.3f}, gen+ridge "
                        f"{p['support_set_readout']['generated+ridge']['mean']:.3f}")
        rows.append(f"audit {a}: {r['heldout'].get('audit', {}).get('verdicts')}")
    if "inr_unconditional" in res:
        i = res["inr_unconditional"]
        rows.append(f"INR unconditional: zoo median PSNR {i['zoo_psnr_median_db']} dB, samples "
                    f"{i['sample_psnr_to_nearest_zoo_render_median_db']} dB (gap {i['gap_db']} dB)")
    return "\n".join(rows)


def merge(names: list[str], stem: str) -> dict:
    """One results file from parts that ran disjoint architectures (same mode and settings)."""
    parts = [json.loads((RESULTS / f"{n}.json").read_text()) for n in names]
    res = {**parts[0], "architectures": {}, "merged_from": sorted(set(names + parts[0].get("merged_from", [])) - {stem}),
           "total_seconds": round(sum(p["total_seconds"] for p in parts), 1)}
    for p in parts:
        if p["mode"] != res["mode"] or p["generator_overrides"] != res["generator_overrides"]:
            raise SystemExit(f"cannot merge runs with different settings: {names}")
        res["architectures"].update(p["architectures"])
        if "inr_unconditional" in p:
            res["inr_unconditional"] = p["inr_unconditional"]
    res["architectures"] = dict(sorted(res["architectures"].items()))
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2))
    plot(res, RESULTS / f"{stem}.png")
    print(table(res))
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small zoo and short training (minutes)")
    ap.add_argument("--zoo", help="a built digits-tasks-multi zoo (else built under --work)")
    ap.add_argument("--inr-zoo", help="a built digits-inr zoo (else a small one is built under --work)")
    ap.add_argument("--architectures", nargs="*", help="only these architectures")
    ap.add_argument("--work", default="/tmp/wspace-bench-generation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-inr", action="store_true")
    ap.add_argument("--vae-steps", type=int, help="override the VAE's training steps")
    ap.add_argument("--denoiser-steps", type=int, help="override the denoiser's training steps")
    ap.add_argument("--results", help="name of the JSON / PNG under benchmarks/results (default: generation, "
                                      "generation_quick with --quick)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other generator settings, e.g. tokenizer.canonicalize=true (YAML values)")
    ap.add_argument("--reaudit", action="store_true",
                    help="audit again the samples of --results with the current audit, redrawn from the pipelines "
                         "saved under --work (needs --zoo)")
    ap.add_argument("--merge", nargs="+", metavar="NAME",
                    help="merge these results (runs of disjoint --architectures, e.g. in parallel processes) "
                         "into --results instead of running")
    args = ap.parse_args(argv)
    if args.reaudit:
        if not args.zoo:
            raise SystemExit("--reaudit needs --zoo (the digits-tasks-multi zoo the pipelines were trained on)")
        return reaudit(args.results or "generation", Path(args.work), Zoo.open(args.zoo), args.seed)
    if args.merge:
        return merge(args.merge, args.results or "generation")
    mode = dict(MODES["quick" if args.quick else "full"])
    for key, value in (("vae", args.vae_steps), ("denoiser", args.denoiser_steps)):
        if value is not None:
            for g in ("gen", "inr_gen"):
                mode[g] = {**mode[g], key: {**mode[g].get(key, {}), "steps": value}}
    for item in args.set:
        key, _, value = item.partition("=")
        *path, leaf = key.split(".")
        if not path:
            raise SystemExit(f"--set {item}: expected GROUP.KEY=VALUE")
        for g in ("gen", "inr_gen"):
            node = mode[g] = {**mode[g]}
            for k in path:
                node[k] = {**node.get(k, {})}
                node = node[k]
            node[leaf] = yaml.safe_load(value)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    zpath = Path(args.zoo) if args.zoo else work / f"digits-tasks-multi-{mode['zoo_size']}"
    if not args.zoo:
        _log(f"building digits-tasks-multi ({mode['zoo_size']}) into {zpath}")
        build_zoo("digits-tasks-multi", zpath, size=mode["zoo_size"], progress=False)
    zoo = Zoo.open(zpath)
    archs = sorted({r.get("architecture") for r in zoo.records if r.get("architecture")})
    if args.architectures:
        archs = [a for a in archs if a in args.architectures]
    res = {"zoo": str(zpath), "mode": "quick" if args.quick else "full", "samples_per_task": mode["n"],
           "generator_overrides": mode["gen"], "inr_generator_overrides": mode["inr_gen"],
           "torch_threads": torch.get_num_threads(), "architectures": {}}
    for a in archs:
        res["architectures"][a] = evaluate_architecture(zoo, a, work, mode, args.seed)
    if not args.skip_inr:
        res["inr_unconditional"] = unconditional_inr(work, mode, args.seed, args.inr_zoo)
    res["total_seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(exist_ok=True)
    stem = args.results or ("generation_quick" if args.quick else "generation")
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2))
    plot(res, RESULTS / f"{stem}.png")
    print(table(res))
    _log(f"results written to {RESULTS / (stem + '.json')}")
    return res


if __name__ == "__main__":
    main()
