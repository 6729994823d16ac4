"""Weight-space augmentation benchmark: (a) throughput, (b) accuracy study, (c) alignment quality on digits-inr.

    python benchmarks/augment.py --quick                  # smoke: (a) small, (b) one tiny run
    python benchmarks/augment.py --zoo zoos/digits-inr    # full: (a) + (b), 3 seeds, 100% and 10% train

(a) Augmentation throughput (networks/s) per transform and for Mixup with and without
    alignment, batch 64, on the digits-inr SIREN spec (2-16-16-1, w0 7); the cost of one
    encoder training step on the same batch is shown for scale.
(b) INR classification test accuracy (digits-inr, mean +- std over seeds) for each
    encoder (``--encoders``, default nfn_hnp unf statnn) and augmentation recipe of
    ``configs/train/augment`` (``--methods``; default: no augmentation, each family alone,
    naive / random-permutation / aligned Mixup with and without sign- or phase-canonical
    alignment, and the combinations), at 100% and 10% of the training INRs, then the
    issue's targets (best aligned Mixup against none and naive, best combination against
    none). Each run is bounded by ``--budget-s`` with a cosine schedule over it, and tests
    the best-validation weights. Uses ``wspace.tasks`` exactly as ``wspace train
    augment=<recipe>`` does.
(c) Alignment quality, run before (b): on pairs of trained INRs, the weight distance after each
    alignment and how far the midpoint network's image lies from the two images' average.

Prints tables and writes ``benchmarks/results/augment.json`` (sections not run keep
their previous results).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import wspace.augment as A  # noqa: E402
from wspace.config import group_options  # noqa: E402
from wspace.families import family_spec, init_weight_space  # noqa: E402
from wspace.io import atomic_write  # noqa: E402
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path)


# ---------------------------------------------------------------------------- (a)
def bench_throughput(batch: int = 64, repeat: int = 5) -> list[dict]:
    spec = family_spec("siren", hidden=[16, 16], w0=7.0)
    g = torch.Generator().manual_seed(0)
    ws = init_weight_space(spec, batch, generator=g)
    partner = init_weight_space(spec, batch, generator=g)
    labels = torch.randint(0, 10, (batch,), generator=g)
    rows: list[dict] = []

    def add(name: str, fn: Callable[[], object], note: str = "", warmup: int = 1) -> None:
        t = best_time(fn, repeat, warmup)
        rows.append({"name": name, "ms_per_batch": 1e3 * t, "networks_per_s": batch / t, "note": note})

    transforms = {
        "permutation": A.RandomPermutation(generator=0),
        "sign_flip": A.RandomSignFlip(generator=0),
        "siren_bias_shift": A.SirenBiasShift(generator=0),
        "gaussian_noise": A.GaussianNoise(generator=0),
        "dropout": A.WeightDropout(generator=0),
        "quantile": A.QuantileZeroing(generator=0),
        "inr_rotation": A.RandomRotation(generator=0),
        "inr_scale": A.RandomScale(generator=0),
        "inr_translation": A.RandomTranslation(generator=0),
        "random_apply(noise, p=0.5)": A.RandomApply(A.GaussianNoise(generator=1), 0.5, generator=0),
    }
    for name, t in transforms.items():
        add(name, lambda t=t: t(ws))
    for name, mix in [("mixup naive", A.MixUp(generator=0)), ("mixup random-perm", A.MixUp("random", generator=0)),
                      ("mixup aligned (weight matching, f64)", A.MixUp("weight_matching", generator=0)),
                      ("mixup aligned (weight matching, f32)",
                       A.MixUp("weight_matching", generator=0, dtype=torch.float32)),
                      ("mixup aligned + sign-canonical (f64)",
                       A.MixUp("weight_matching", canonical_signs=True, generator=0)),
                      ("mixup aligned + phase-canonical (f64)",
                       A.MixUp("weight_matching", canonical_phases=True, generator=0))]:
        add(name, lambda mix=mix: mix(ws, partner, labels, labels.flip(0), num_classes=10))
    # cached pair alignment: steady state (every pair seen before) vs. first sight
    idx_a, idx_b = list(range(batch)), list(range(batch, 2 * batch))
    cached = A.MixUp("weight_matching", cache=True, generator=0)
    add("mixup aligned, pair cache (hit)",
        lambda: cached(ws, partner, labels, labels, index_a=idx_a, index_b=idx_b, num_classes=10),
        "after the pair was seen once")
    # canonicalization: every network aligned to one reference once, then a gather
    ref = A.MixUp("reference", reference=init_weight_space(spec, 1, generator=g), generator=0)
    add("mixup reference-canonical (cached)",
        lambda: ref(ws, partner, labels, labels, index_a=idx_a, index_b=idx_b, num_classes=10),
        "per-network permutation cached by index")
    add("mixup reference-canonical (cold)",
        lambda: A.MixUp("reference", reference=ws[0], generator=0)(ws, partner, labels, labels, num_classes=10),
        "alignment to the reference every call")

    # for scale: one encoder training step on the same batch
    from wspace.nn import NFN, UNF

    for enc_name, cls, kw in (("unf", UNF, {}), ("nfn", NFN, {"mode": "hnp"})):
        try:
            enc = cls(spec, 10, **kw)
        except Exception as e:  # an encoder that cannot take this spec: skip the reference row
            print(f"  (skipping {enc_name} step: {e})")
            continue
        opt = torch.optim.AdamW(enc.parameters(), lr=1e-3)

        def step(enc=enc, opt=opt) -> None:
            loss = torch.nn.functional.cross_entropy(enc(ws), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()

        add(f"[reference] {enc_name}{'-' + kw['mode'] if kw else ''} train step", step, "encoder fwd+bwd+AdamW")
    return rows


# ---------------------------------------------------------------------------- (c)
ALIGNMENT_MODES = {  # how each Mixup recipe brings the partner to the first network before mixing
    "naive": {"align": None},
    "random permutation": {"align": "random"},
    "weight matching": {"align": "weight_matching"},
    "sign-canonical + weight matching": {"align": "weight_matching", "canonical_signs": True},
    "phase-canonical + weight matching": {"align": "weight_matching", "canonical_phases": True},
}


def bench_alignment_quality(zoo_path: Path, n_pairs: int = 256, resolution: int = 16) -> list[dict]:
    """How well each alignment prepares trained INR pairs for interpolation, on raw weights:
    the squared weight distance between a network and its aligned partner, and how far the
    midpoint network's image is from the average of the two images (MSE on a
    ``resolution``-square grid; lower means the mix stays between the two functions)."""
    from datasets_zoo import Zoo
    from wspace.coordinates import coordinate_grid

    train = Zoo.open(zoo_path).dataset("train", target="class", normalize=False)
    n = min(n_pairs, len(train) // 2)
    ws, _ = train.batch(np.arange(2 * n))
    a, b = ws[:n], ws[n:2 * n]
    x = coordinate_grid(resolution)
    mean_image = 0.5 * (a(x) + b(x))
    rows = []
    for name, kw in ALIGNMENT_MODES.items():
        _, partner = A.MixUp(generator=0, **kw).partner(a, b)
        dist = sum(((ta - tb) ** 2).flatten(1).sum(1) for ta, tb in zip(a.tensors, partner.tensors))
        mid = a * 0.5 + partner * 0.5
        rows.append({"alignment": name, "pairs": n, "sq_distance": float(dist.mean()),
                     "midpoint_image_mse": float(((mid(x) - mean_image) ** 2).mean())})
    return rows


# ---------------------------------------------------------------------------- (b)
STUDY_METHODS = ("none", "symmetry", "data_agnostic", "inr_input", "mixup_naive", "mixup_random_perm",
                 "mixup_aligned", "mixup_aligned_signs", "mixup_aligned_phases", "symmetry_inr",
                 "symmetry_inr_mixup", "symmetry_mixup", "symmetry_data_agnostic")  # options of configs/train/augment
ALIGNED = ("mixup_aligned", "mixup_aligned_signs", "mixup_aligned_phases")  # alignment-based Mixup variants
COMBINATIONS = ("symmetry_inr", "symmetry_inr_mixup", "symmetry_mixup", "symmetry_data_agnostic",
                "combo")  # recipes that combine families


def _subset_zoo(zoo, fraction: float, seed: int = 0):
    """The zoo with only ``fraction`` of its train INRs (the same subset for every method and seed)."""
    if fraction >= 1.0:
        return zoo
    recs = zoo.records
    train = np.array([i for i, r in enumerate(recs) if r.get("split") == "train"])
    keep_n = max(1, int(round(fraction * len(train))))
    chosen = np.random.default_rng(seed).choice(train, keep_n, replace=False)
    others = np.array([i for i, r in enumerate(recs) if r.get("split") != "train"])
    return zoo.select(np.sort(np.concatenate([chosen, others])))


def run_one(zoo, encoder: str, method: str, seed: int, epochs: int, budget_s: float, batch_size: int,
            lr: float) -> dict:
    import lightning as L

    from datasets_zoo import ZooDataModule
    from wspace.tasks import InrClassification
    from wspace.commands.train import augment_from_config, encoder_config

    class KeepBest(L.Callback):
        """Keep the weights of the best validation accuracy in memory (no checkpoint files)."""

        def __init__(self) -> None:
            self.best, self.state = -1.0, None

        def on_validation_end(self, trainer, module) -> None:
            acc = trainer.callback_metrics.get("val/acc")
            if acc is not None and float(acc) > self.best:
                self.best, self.state = float(acc), copy.deepcopy(module.state_dict())

    for name in ("lightning.pytorch", "lightning.fabric"):  # one line per run is enough
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    L.seed_everything(seed, workers=True, verbose=False)
    dm = ZooDataModule(zoo, target="class", batch_size=batch_size, normalize=True)
    dm.set_augmentation(*augment_from_config(method, seed=seed)(dm))  # as `wspace train augment=<method>`
    module = InrClassification.from_datamodule(dm, encoder=encoder_config(encoder), lr=lr, scheduler="cosine")
    keep = KeepBest()
    trainer = L.Trainer(max_epochs=epochs, max_time={"seconds": budget_s}, accelerator="cpu", devices=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[keep], num_sanity_val_steps=0)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - t0
    if keep.state is not None:
        module.load_state_dict(keep.state)
    res = trainer.test(module, datamodule=dm, verbose=False)
    return {"encoder": encoder, "method": method, "seed": seed, "test_acc": float(res[0]["test/acc"]),
            "best_val_acc": keep.best, "epochs": int(trainer.current_epoch), "fit_s": round(fit_s, 2),
            "train_size": len(dm.train)}


def summarize(runs: list[dict], encoders: list[str], methods: list[str], fractions: list[float],
              seeds: list[int]) -> list[dict]:
    """Mean and std of test accuracy over seeds per (fraction, encoder, method) that has runs."""
    summary = []
    for frac in fractions:
        for enc in encoders:
            for m in methods:
                accs = [r["test_acc"] for r in runs if r["encoder"] == enc and r["method"] == m
                        and r["train_fraction"] == frac and r["seed"] in seeds]
                if accs:
                    summary.append({"encoder": enc, "method": m, "train_fraction": frac, "n": len(accs),
                                    "mean": float(np.mean(accs)), "std": float(np.std(accs))})
    return summary


def bench_study(zoo_path: Path, encoders: list[str], methods: list[str], fractions: list[float], seeds: list[int],
                epochs: int, budget_s: float, batch_size: int, lr: float, previous: list[dict] = (),
                save: Callable[[dict], None] | None = None) -> dict:
    """Run every (fraction, encoder, method, seed) not already in ``previous`` (runs of an
    interrupted study with the same settings), calling ``save(study)`` after each run."""
    from datasets_zoo import Zoo

    zoo = Zoo.open(zoo_path)
    runs = list(previous)
    done = {(r["encoder"], r["method"], r["train_fraction"], r["seed"]) for r in runs}
    settings = {"zoo": str(zoo_path), "epochs": epochs, "budget_s_per_run": budget_s, "batch_size": batch_size,
                "lr": lr}

    def study() -> dict:
        return {**settings, "seeds": seeds, "runs": runs,
                "summary": summarize(runs, encoders, methods, fractions, seeds)}

    if done:
        print(f"  resuming: {len(done)} run(s) already in the results file")
    for frac in fractions:
        sub = _subset_zoo(zoo, frac)
        for enc in encoders:
            for m in methods:
                for s in seeds:
                    if (enc, m, frac, s) in done:
                        continue
                    r = run_one(sub, enc, m, s, epochs, budget_s, batch_size, lr)
                    r["train_fraction"] = frac
                    runs.append(r)
                    if save is not None:
                        save(study())
                    print(f"  {enc:>8} {m:>20} frac={frac:<4} seed={s}: test acc {r['test_acc']:.3f} "
                          f"({r['epochs']} ep, {r['fit_s']:.0f} s, train {r['train_size']})", flush=True)
    return study()


def print_study(study: dict, encoders: list[str], methods: list[str], fractions: list[float]) -> None:
    cell = {(s["encoder"], s["method"], s["train_fraction"]): s for s in study["summary"]}
    cols = [(e, f) for f in fractions for e in encoders]
    print("  " + f"{'method':<22}" + "".join(f"{e + ' ' + format(f, '.0%'):>18}" for e, f in cols))
    for m in methods:
        row = "".join(f"{100 * cell[(e, m, f)]['mean']:>11.1f} +-{100 * cell[(e, m, f)]['std']:>4.1f}"
                      if (e, m, f) in cell else f"{'n/a':>18}" for e, f in cols)
        print(f"  {m:<22}{row}")


def study_targets(study: dict) -> list[dict]:
    """The issue's targets per (encoder, fraction), from the study's mean accuracies: the best
    aligned Mixup against no augmentation and naive Mixup, and the gains of the best
    combination of families and of the best recipe of any kind over no augmentation
    (points of test accuracy; ``None`` where a run is missing)."""
    cell = {(s["encoder"], s["method"], s["train_fraction"]): 100 * s["mean"] for s in study["summary"]}
    rows = []
    for enc, frac in dict.fromkeys((s["encoder"], s["train_fraction"]) for s in study["summary"]):
        def best(names):
            got = [(cell[(enc, m, frac)], m) for m in names if (enc, m, frac) in cell]
            return max(got) if got else (None, None)

        none, naive = cell.get((enc, "none", frac)), cell.get((enc, "mixup_naive", frac))
        aligned, aligned_name = best(ALIGNED)
        combo, combo_name = best(COMBINATIONS)
        top, top_name = best([m for (e, m, f) in cell if e == enc and f == frac and m != "none"])
        gap = (lambda a, b: None if a is None or b is None else round(a - b, 2))
        rows.append({"encoder": enc, "train_fraction": frac, "best_aligned": aligned_name,
                     "aligned_minus_none": gap(aligned, none), "aligned_minus_naive": gap(aligned, naive),
                     "best_combination": combo_name, "combination_minus_none": gap(combo, none),
                     "best_recipe": top_name, "best_recipe_minus_none": gap(top, none)})
    return rows


def print_targets(rows: list[dict]) -> None:
    fmt = (lambda v: "   n/a" if v is None else f"{v:+6.1f}")
    print(f"  {'encoder':<10}{'data':>6}  {'best aligned Mixup':<22}{'-none':>7}{'-naive':>7}  "
          f"{'best combination':<24}{'-none':>7}  {'best recipe':<24}{'-none':>7}")
    for r in rows:
        print(f"  {r['encoder']:<10}{r['train_fraction']:>6.0%}  {str(r['best_aligned']):<22}"
              f"{fmt(r['aligned_minus_none'])}{fmt(r['aligned_minus_naive'])}  {str(r['best_combination']):<24}"
              f"{fmt(r['combination_minus_none'])}  {str(r['best_recipe']):<24}{fmt(r['best_recipe_minus_none'])}")


def plot_studies(studies: dict[str, dict], path: Path) -> Path:
    """One panel per study (e.g. 10% and 100% of the training INRs): test accuracy per recipe,
    one bar per encoder with the std over seeds, and the no-augmentation level as a line."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(studies), figsize=(6.5 * len(studies), 4.8), squeeze=False)
    for ax, (title, st) in zip(axes[0], studies.items()):
        encoders = list(dict.fromkeys(c["encoder"] for c in st["summary"]))
        methods = list(dict.fromkeys(c["method"] for c in st["summary"]))
        cell = {(c["encoder"], c["method"]): c for c in st["summary"]}
        width = 0.8 / max(1, len(encoders))
        for j, enc in enumerate(encoders):
            xs = [i for i, m in enumerate(methods) if (enc, m) in cell]
            bars = ax.bar([x + (j - (len(encoders) - 1) / 2) * width for x in xs],
                          [100 * cell[(enc, methods[x])]["mean"] for x in xs], width,
                          yerr=[100 * cell[(enc, methods[x])]["std"] for x in xs], capsize=2, label=enc)
            if (enc, "none") in cell:
                ax.axhline(100 * cell[(enc, "none")]["mean"], color=bars.patches[0].get_facecolor(), lw=0.8, ls="--")
        ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        lo = min(100 * c["mean"] for c in st["summary"])
        ax.set_ylim(max(0.0, lo - 5), None)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_study(args: argparse.Namespace, zoo_path: Path, results: dict, out: Path) -> dict:
    """(b) with the command line's settings; resumes the runs of ``results["study"]`` when
    its settings match, and saves ``results`` to ``out`` after every run."""
    encoders = args.encoders or (["statnn"] if args.quick else ["nfn_hnp", "unf", "statnn"])
    methods = args.methods or (["none", "combo"] if args.quick else list(STUDY_METHODS))
    fractions = args.fractions or ([1.0] if args.quick else [1.0, 0.1])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    epochs = args.epochs or (1 if args.quick else 40)
    budget = args.budget_s or (20.0 if args.quick else 120.0)
    print(f"(b) INR classification test accuracy (%), {len(seeds)} seed(s), zoo {zoo_path}")
    old = results.get("study") or {}
    same = all(old.get(k) == v for k, v in (("zoo", str(zoo_path)), ("epochs", epochs), ("budget_s_per_run", budget),
                                            ("batch_size", args.batch_size), ("lr", args.lr)))
    previous = old.get("runs", []) if same and not args.quick else []

    def save(study: dict) -> None:  # after every run: an interrupted study resumes
        results["study"] = study
        _write_atomic(out, results)

    study = bench_study(zoo_path, encoders, methods, fractions, seeds, epochs, budget, args.batch_size, args.lr,
                        previous=previous, save=save)
    print_study(study, encoders, methods, fractions)
    study["targets"] = study_targets(study)
    print("  targets (points of test accuracy; best of each kind by mean):")
    print_targets(study["targets"])
    if study["summary"]:
        panels = {f"{f:.0%} of the training INRs, {budget:.0f} s per run":
                  {"summary": [c for c in study["summary"] if c["train_fraction"] == f]} for f in fractions}
        print(f"  plot: {plot_studies({k: v for k, v in panels.items() if v['summary']}, out.with_suffix('.png'))}")
    return study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small (a), one tiny (b) run on a small zoo")
    ap.add_argument("--zoo", default="zoos/digits-inr", help="digits-inr zoo for (b) (built there if missing)")
    ap.add_argument("--budget-s", type=float, default=None, help="(b) wall-clock limit per training run "
                    "(default 120; quick 20)")
    ap.add_argument("--epochs", type=int, default=None, help="(b) max epochs per run (default 40; quick 1)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="(b) seeds (default 0 1 2; quick 0)")
    ap.add_argument("--encoders", nargs="+", default=None, help="(b) encoders (default nfn_hnp unf statnn)")
    ap.add_argument("--methods", nargs="+", default=None, choices=group_options("train", "augment"),
                    help=f"(b) augmentation recipes (default: {' '.join(STUDY_METHODS)})")
    ap.add_argument("--fractions", type=float, nargs="+", default=None, help="(b) train fractions (default 1 0.1)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--skip-throughput", action="store_true", help="skip (a)")
    ap.add_argument("--skip-study", action="store_true", help="skip (b)")
    ap.add_argument("--skip-alignment", action="store_true", help="skip (c)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=str(ROOT / "results" / "augment.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    results.update({"quick": args.quick, "platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()})

    if not args.skip_throughput:
        print("(a) augmentation throughput, batch 64, digits-inr SIREN 2-16-16-1 (w0 7)")
        rows = bench_throughput(64, repeat=3 if args.quick else 10)
        results["throughput"] = rows
        print(f"  {'transform':<40}{'ms/batch':>10}{'networks/s':>14}")
        for r in rows:
            print(f"  {r['name']:<40}{r['ms_per_batch']:>10.2f}{r['networks_per_s']:>14.0f}  {r['note']}")

    if not (args.skip_study and args.skip_alignment):
        zoo_path = Path(args.zoo)
        tmp = None
        if args.quick and not zoo_path.exists():
            tmp = tempfile.TemporaryDirectory()
            zoo_path = Path(tmp.name) / "digits-inr-small"
        if not zoo_path.exists():
            from datasets_zoo.build import build_zoo

            print(f"  building digits-inr ({'small' if args.quick else 'full'}) into {zoo_path}")
            build_zoo("digits-inr", zoo_path, size="small" if args.quick else "full", progress=not args.quick)
        if not args.skip_alignment:
            rows = bench_alignment_quality(zoo_path, n_pairs=64 if args.quick else 256)
            results["alignment_quality"] = rows
            print(f"(c) alignment quality on {rows[0]['pairs']} pairs of trained INRs (raw weights)")
            print(f"  {'alignment':<36}{'sq. distance':>14}{'midpoint image MSE':>21}")
            for r in rows:
                print(f"  {r['alignment']:<36}{r['sq_distance']:>14.2f}{r['midpoint_image_mse']:>21.4f}")
        if not args.skip_study:
            results["study"] = run_study(args, zoo_path, results, out)
        if tmp is not None:
            tmp.cleanup()

    _write_atomic(out, results)
    print(f"wrote {out}")


def _write_atomic(path: Path, data: dict) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
