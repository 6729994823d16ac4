"""``wspace sample checkpoint=<dir> task=<name> n=<n> out=<dir>``: draw networks from a
trained generator, write them as a native zoo and print their accuracy on the task.

``checkpoint`` is a pipeline directory (``save_pretrained`` of any
:class:`generators.pipeline.WeightGenerator`; its ``model_index.json`` names the class) or
a training output directory holding ``pipeline/``. ``guidance_scale``,
``num_inference_steps``, ``sampler`` and ``readout`` are passed to the generator when set
(diffusion generators use them; others reject them). Records carry ``task``, ``sample`` (index), ``seed``, the
sampler settings in ``hparams`` and ``metrics`` (``test_acc``, ``train_acc``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from wspace.errors import WeightSpaceError

from .checks import check_config

if TYPE_CHECKING:
    from generators.pipeline import WeightGenerator

__all__ = ["main", "load_pipeline", "write_samples", "check_sample_out"]

# sample.yaml keys passed to the generator's `sample` when not null
SAMPLING_OPTIONS = ("guidance_scale", "num_inference_steps", "sampler", "readout")


def load_pipeline(checkpoint: str | Path, device: str = "cpu") -> "WeightGenerator":
    """The generator stored at ``checkpoint`` (or at ``checkpoint/pipeline``), of whichever
    class its ``model_index.json`` names."""
    from generators.pipeline import WeightGenerator, pipeline_directory

    return WeightGenerator.from_pretrained(pipeline_directory(checkpoint), device=device)


def write_samples(ws, task: str | Sequence[str], out: str | Path, meta: dict, hparams: dict, seed: int
                  ) -> dict[str, torch.Tensor]:
    """Write ``ws`` as a native zoo at ``out``; returns their metrics.

    ``task``: the task of every network, or one task name per network (None: no task, no
    metrics; samples of an unconditional generator). The zoo is written
    into a temporary folder beside ``out`` and renamed to ``out`` once complete, so a failure
    (e.g. non-finite sampled weights) leaves nothing behind that would block a rerun.
    ``out`` must not exist or be an empty directory.
    """
    import shutil

    from datasets_zoo.format import ZooWriter
    from datasets_zoo.tasks import get_task

    from generators.evaluate import accuracy

    out = Path(out)
    check_sample_out(out)
    if task is None:
        names: list[str | None] = [None] * len(ws)
        metrics: dict[str, torch.Tensor] = {}
    else:
        names = [get_task(task).name] * len(ws) if isinstance(task, str) else [get_task(t).name for t in task]
        metrics = {"test_acc": accuracy(ws, names, "test"), "train_acc": accuracy(ws, names, "train")}
    records = [{"id": f"sample/{i:06d}", "run": i, "seed": seed, "sample": i, "hparams": hparams,
                "metrics": {k: float(v[i]) for k, v in metrics.items()}, **({"task": t} if t else {})}
               for i, t in enumerate(names)]
    tasks = {t: get_task(t).meta() for t in sorted({t for t in names if t})}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with ZooWriter(tmp, {**meta, "tasks": tasks}) as w:
            w.append(ws.to("cpu"), records)
        if out.is_dir():
            out.rmdir()  # empty (checked above): the complete zoo takes its place
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def check_sample_out(out: str | Path) -> None:
    """``out`` can receive a sampled zoo: it does not exist, or is an empty directory."""
    out = Path(out)
    if (out / "zoo.json").exists():
        raise WeightSpaceError("a zoo already exists here; choose a new out= directory", file=out)
    if out.exists() and not out.is_dir():
        raise WeightSpaceError("out= is an existing file; it must name a new directory", file=out)
    if out.is_dir() and any(out.iterdir()):
        raise WeightSpaceError("out= is a directory that is not empty; choose a new out= directory", file=out)


def main(cfg: Any) -> dict[str, torch.Tensor]:
    """Entry point of ``wspace sample`` (config ``configs/sample/sample.yaml``)."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    check_config("sample", cfg)  # named errors for bad values (n=abc, guidance_scale=nan, ...) before any work
    check_sample_out(get("out"))
    n = int(get("n", 16))
    seed = int(get("seed", 0) or 0)
    device = str(get("device", "cpu") or "cpu")
    pipe = load_pipeline(get("checkpoint"), device)
    task = None if get("task") is None else str(get("task"))
    if task is None and pipe.conditional:
        raise WeightSpaceError(f"this {pipe.name} generator is conditioned on a task's data: add task=<name> "
                               f"(e.g. task=digits:0-3-5-7-9)")
    g = torch.Generator().manual_seed(seed)
    options = {k: get(k) for k in SAMPLING_OPTIONS if get(k) is not None}
    # unconditional generators draw without a condition; a task given to them only scores the samples
    ws = pipe.sample(task if pipe.conditional else None, n, generator=g, **options)
    hp = pipe.sampling_settings(**options)
    meta = {"generator": {"name": pipe.name, "checkpoint": str(get("checkpoint")), "task": task, "n": n, "seed": seed,
                          **hp}}
    m = write_samples(ws, task, get("out"), meta, hp, seed)
    if task is None:
        print(f"{n} networks written to {get('out')} (unconditional: no task to score them on)")
        return m
    acc = m["test_acc"]
    print(f"{n} networks for {task} written to {get('out')}: test accuracy mean {acc.mean():.4f}, "
          f"median {acc.median():.4f}, min {acc.min():.4f}, max {acc.max():.4f}")
    return m
