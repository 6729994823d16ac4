"""``wspace quickstart``: the library's three jobs end to end, in a few CPU minutes.

1. build a ``digits-tasks`` zoo (MLPs on 5-way class subsets of digits; some tasks held out),
2. train a D2NWG generator (weight VAE + dataset-conditioned latent diffusion) on the
   training tasks,
3. sample initializations for the held-out tasks from their data alone and compare them,
   before and after a few fine-tuning steps, with random init and with the zoo's own
   trained models,
4. audit the samples against the training checkpoints (replica / interpolation / near-copy / novel),

then print one summary table and where everything was written. Every stage resumes: a
rerun with the same ``out`` reuses the zoo and the trained generator.

Python::

    from wspace.commands.quickstart import run_quickstart
    summary = run_quickstart("wspace-quickstart")
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from wspace.config import packaged_config
from wspace.errors import WeightSpaceError

__all__ = ["run_quickstart", "main", "DEFAULTS"]

# The tour's sizes, read from the `quickstart` node of configs/quickstart/quickstart.yaml (their
# one home, also what `wspace quickstart quickstart.seeds=3` overrides); sized to finish in well
# under 10 minutes on 2 CPU cores (each stage times itself).
DEFAULTS: dict[str, Any] = packaged_config("quickstart/quickstart.yaml")["quickstart"]


def _stage(name: str, progress: bool) -> float:
    if progress:
        print(f"[quickstart] {name} ...", flush=True)
    return time.perf_counter()


def _zoo_overrides(c: Mapping[str, Any]) -> dict[str, Any]:
    limit = None if c.get("tasks") is None else int(c["tasks"])
    return {"tasks": {"limit": limit}, "search": {"seeds": int(c["seeds"])},
            "epochs": int(c["epochs"]), "save_epochs": [int(c["epochs"])]}


def run_quickstart(out: str | Path = "wspace-quickstart", *, seed: int = 0, device: str = "cpu",
                   progress: bool = True, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the tour into ``out`` and return the summary (also written to ``out/summary.json``).

    ``config`` overrides :data:`DEFAULTS` (``generator`` is passed to
    :func:`generators.d2nwg.train_d2nwg`).
    """
    from datasets_zoo import Zoo
    from datasets_zoo.build import build_zoo
    from wspace.families import init_weight_space
    from generators.d2nwg import train_d2nwg
    from generators.evaluate import accuracy, finetune_curve
    from generators.probe import fit_readout
    from .sample import write_samples

    from wspace.audit import audit
    from wspace.space import WeightSpace

    c = {**DEFAULTS, **dict(config or {})}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    # 1. the zoo
    t0 = _stage("1/4 building the digits-tasks zoo", progress)
    zoo_dir = build_zoo("digits-tasks", out / "zoo", size="full", seed=seed, overrides=_zoo_overrides(c),
                        progress=progress)
    zoo = Zoo.open(zoo_dir)
    splits = zoo.meta.get("splits") or {}
    held = list(splits.get("built_heldout_tasks") or [])
    if not held:
        raise WeightSpaceError("the zoo has no held-out tasks; raise `tasks`", file=zoo_dir)
    times["zoo"] = time.perf_counter() - t0

    # 2. the generator (trained on the training tasks only: D2NWG's data.split = "train")
    t0 = _stage("2/4 training D2NWG (weight VAE, then latent diffusion)", progress)
    pipe = train_d2nwg(zoo, out / "d2nwg", seed=seed, device=device, progress=progress,
                       config=dict(c["generator"]))
    times["generator"] = time.perf_counter() - t0

    # 3. initializations for unseen tasks, from their data alone
    t0 = _stage(f"3/4 sampling {c['samples_per_task']} networks for each of {len(held)} held-out tasks", progress)
    n = int(c["samples_per_task"])
    g = torch.Generator().manual_seed(seed)
    shots = [pipe.condition(t, n, generator=g) for t in held]  # the support sets sampling is conditioned on
    generated = WeightSpace.cat([pipe.sample(s, n, generator=g) for s in shots]).to("cpu")
    names = [t for t in held for _ in range(n)]
    steps = [int(s) for s in c["finetune_steps"]]
    gen_curve = finetune_curve(generated, names, steps, seed=seed)
    random_init = init_weight_space(zoo.spec, len(generated), generator=torch.Generator().manual_seed(seed + 1))
    rnd_curve = finetune_curve(random_init, names, steps, seed=seed)
    readout = pipe.resolve_readout()
    curves = {"generated": gen_curve, "random_init": rnd_curve}
    if readout == "ridge":  # sampling refit the output layer on the shots: the same step on random layers
        fitted = fit_readout(random_init, torch.cat(shots).cpu(), float(pipe.config["condition"]["probe_ridge"]))
        curves["random_init+ridge"] = finetune_curve(fitted, names, steps, seed=seed)
    trained = zoo.filter(split="heldout")
    trained_acc = accuracy(trained.weights(), list(trained.column("task")))
    if not (out / "samples" / "zoo.json").exists():  # a rerun keeps the samples it wrote
        write_samples(generated, names, out / "samples",
                      {"generator": {"name": "d2nwg", "checkpoint": str(out / "d2nwg" / "pipeline")}}, {}, seed)
    times["sampling+evaluation"] = time.perf_counter() - t0

    # 4. the memorization audit (weights only: samples of different tasks share one zoo)
    t0 = _stage("4/4 auditing the samples against the training checkpoints", progress)
    training = zoo.filter(split="train")
    report = audit(generated, training, seed=seed)
    paths = report.save(out / "audit")
    times["audit"] = time.perf_counter() - t0

    verdicts = dict(report.summary["fractions"])
    summary = {
        "zoo": {"path": str(zoo_dir), "checkpoints": len(zoo), "train_tasks": len(splits.get("built_train_tasks", [])),
                "heldout_tasks": len(held)},
        "readout": readout,
        "heldout_accuracy": {
            **{k: {s: float(a.mean()) for s, a in curve.items()} for k, curve in curves.items()},
            "zoo_trained": float(trained_acc.mean()),
        },
        "audit": {"fractions": verdicts, "answer": report.summary["answer"], "report": str(paths["html"])},
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    with open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    print(_table(summary, steps))
    print(f"\nwrote {out}: zoo/, d2nwg/pipeline/, samples/ (a zoo), audit/report.html, summary.json")
    return summary


def _table(s: dict, steps: list[int]) -> str:
    acc = s["heldout_accuracy"]
    lines = [
        f"zoo: {s['zoo']['checkpoints']} checkpoints, {s['zoo']['train_tasks']} training tasks, "
        f"{s['zoo']['heldout_tasks']} held-out tasks",
        "",
        "held-out tasks, mean test accuracy after k fine-tuning steps",
        f"{'init':<26}" + "".join(f"{'k=' + str(k):>9}" for k in steps),
    ]
    ridge = s.get("readout") == "ridge"
    rows = (("D2NWG + ridge readout" if ridge else "D2NWG (from data)", "generated"),
            ("random init", "random_init"), ("random + ridge readout", "random_init+ridge"))
    for name, key in rows:
        if key in acc:
            lines.append(f"{name:<26}" + "".join(f"{acc[key][k]:>9.3f}" for k in steps))
    lines.append(f"{'zoo models (trained)':<26}{acc['zoo_trained']:>9.3f}")
    if ridge:
        lines.append("(ridge readout: the output layer refit on the task's support shots, as sampling does by "
                     "default; readout=none keeps the generated one)")
    f = s["audit"]["fractions"]
    lines += ["", "audit of the samples: " + s["audit"].get("answer", ", ".join(f"{k} {v:.0%}" for k, v in f.items())),
              f"report: {s['audit']['report']}",
              "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items())
              + f" (total {sum(s['seconds'].values()):.0f} s)"]
    return "\n".join(lines)


def main(cfg: Any) -> dict[str, Any]:
    """Entry point of ``wspace quickstart`` (config ``configs/quickstart/quickstart.yaml``)."""
    from omegaconf import OmegaConf

    from generators.config import generator_defaults
    from wspace import interrupt
    from wspace.fingerprint import rerun_policy

    from .checks import Option, check_against_defaults, check_config, check_value

    check_config("quickstart", cfg)
    overrides = OmegaConf.to_container(cfg.get("quickstart") or {}, resolve=True)
    check_against_defaults({k: v for k, v in overrides.items() if k != "generator"}, DEFAULTS, "quickstart")
    if overrides.get("tasks") is not None:
        check_value("quickstart.tasks", overrides["tasks"], Option("int", minimum=2))
    check_against_defaults(overrides.get("generator") or {}, generator_defaults("d2nwg"), "quickstart.generator")
    interrupt.set_resume_hint(f"finished stages and checkpoints in {cfg.out} are reused")
    with rerun_policy(cfg.get("resume", True), cfg.get("overwrite", False)):
        return run_quickstart(str(cfg.out), seed=int(cfg.seed), device=str(cfg.device),
                              progress=bool(cfg.get("progress", True)), config=overrides)
