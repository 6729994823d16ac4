"""Running a build: plan, check an existing zoo for resuming, train the missing chunks."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from wspace.errors import WeightSpaceError

from ..format import ZOO_JSON, ZooWriter
from ..tasks import get_task
from .architectures import architectures_meta, built_heldout_pairs
from .chunks import checkpoint_id, plan_chunks
from .classifier_chunks import train_classifier_chunk
from .inr_chunks import fit_inr_chunk
from .planning import Run, plan_runs, subset_split
from .presets import load_preset
from .progress import Progress

__all__ = ["BUILDER_VERSION", "build_zoo"]

BUILDER_VERSION = 1


def _meta(cfg: dict, size: str, seed: int, runs: Sequence[Run]) -> dict:
    tasks = sorted({r.task for r in runs})
    meta: dict[str, Any] = {
        "builder": {"name": cfg["name"], "size": size, "seed": seed, "version": BUILDER_VERSION, "config": cfg,
                    "runs": len(runs)},
        "tasks": {t: get_task(t).meta() for t in tasks},
    }
    if cfg["kind"] == "classifier":
        meta["builder"]["checkpoints"] = len(runs) * len(set(cfg["save_epochs"]))
    else:
        meta["builder"]["checkpoints"] = len(runs)
    if cfg.get("tasks"):
        train, held = subset_split(cfg, seed)
        meta["splits"] = {"train_tasks": train, "heldout_tasks": held,
                          "built_train_tasks": sorted({r.task for r in runs if r.extra.get("split") == "train"}),
                          "built_heldout_tasks": sorted({r.task for r in runs if r.extra.get("split") == "heldout"})}
    if cfg.get("architectures"):  # several architectures (see .architectures)
        meta["architectures"] = architectures_meta(cfg, runs)
        if "splits" in meta:
            meta["splits"]["heldout_pairs"] = built_heldout_pairs(runs)
    if cfg["kind"] == "inr":
        by: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for r in runs:
            if r.extra["variant"] == 0 and r.extra["view"] == 0:
                by[r.extra["split"]].append(r.extra["source_index"])
        meta["splits"] = {f"{k}_source_images": v for k, v in by.items()}
    return meta


def _check_resume(out: Path, meta: dict) -> None:
    f = out / ZOO_JSON
    if not f.exists():
        return
    try:
        old = (json.loads(f.read_text()).get("meta") or {}).get("builder")
    except (OSError, json.JSONDecodeError) as e:
        raise WeightSpaceError(f"cannot read the existing zoo description: {e}", file=f) from e
    new = meta["builder"]
    if old is None:
        raise WeightSpaceError("this directory holds a zoo that was not made by the builder; use a new out= directory",
                               file=out)
    keys = ("name", "size", "seed", "version", "config")
    if json.dumps({k: old.get(k) for k in keys}, sort_keys=True) != json.dumps({k: new.get(k) for k in keys},
                                                                                   sort_keys=True):
        diff = [k for k in keys if json.dumps(old.get(k), sort_keys=True) != json.dumps(new.get(k), sort_keys=True)]
        raise WeightSpaceError(f"an unfinished or finished zoo with a different configuration is here (differs in "
                               f"{diff}); resume with the same settings or use a new out= directory", file=out)


def build_zoo(
    preset: str | Mapping,
    out: str | Path,
    *,
    size: str = "full",
    seed: int = 0,
    device: str = "cpu",
    overrides: Mapping | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    on_chunk_done: Callable[[int], None] | None = None,
) -> Path:
    """Train the zoo of ``preset`` into ``out`` (created, or resumed if unfinished).

    Args:
        preset: a preset name from ``configs/zoo_build/zoo/``, a YAML path or a mapping.
        out: the zoo directory.
        size: ``"small"`` (seconds, for tests) or ``"full"``.
        seed: global seed; every run's seed derives from it.
        device: torch device for training.
        overrides: nested dict merged into the preset after the size.
        chunk_size: networks per vectorized chunk (default: the preset's).
        progress: show progress (a tqdm bar on a terminal, a line per chunk otherwise; see :mod:`.progress`).
        on_chunk_done: called with the chunk index after each trained chunk is written.

    Returns:
        ``out`` as a Path.
    """
    cfg = load_preset(preset, size, overrides)
    out = Path(out)
    runs = plan_runs(cfg, seed)
    if not runs:
        raise WeightSpaceError(f"zoo preset '{cfg['name']}' plans no runs")
    meta = _meta(cfg, size, seed, runs)
    _check_resume(out, meta)
    chunk_size = int(chunk_size or cfg.get("chunk_size", 256))
    chunks = plan_chunks(cfg, runs, chunk_size)
    name = cfg["name"]
    epochs = sorted(set(cfg.get("save_epochs", []))) if cfg["kind"] == "classifier" else [1]

    writer = ZooWriter(out, meta)
    try:
        todo = []
        for ch in chunks:
            missing = {e for r in ch.runs for e in epochs if checkpoint_id(name, r.run, e) not in writer.done_ids}
            if missing:
                todo.append((ch, sorted(missing)))
        bar = Progress(sum(len(ch.runs) for ch, _ in todo), f"zoo {name}", progress)
        try:
            for ch, missing in todo:
                before = bar.n
                if cfg["kind"] == "classifier":
                    train_classifier_chunk(cfg, ch, missing, writer, device, bar)
                else:
                    fit_inr_chunk(cfg, ch, writer, device, seed, bar)
                bar.finish_chunk(before, len(ch.runs))
                if on_chunk_done is not None:
                    on_chunk_done(ch.index)
        finally:
            bar.close()
    finally:
        writer.close()
    return out
