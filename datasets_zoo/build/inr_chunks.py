"""Fitting one chunk of INRs and appending them to the zoo."""
from __future__ import annotations

import json

import torch

from wspace.families import family_spec

from ..format import ZooWriter
from ..tasks import affine_variants, images_to_targets
from ..train_vectorized import fit_inrs
from .chunks import Chunk, checkpoint_id
from .networks import init_runs
from .planning import inr_images
from .progress import Progress

__all__ = ["render_targets", "fit_inr_chunk"]


_RENDER_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def render_targets(cfg: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(coords ``[P, 2]``, targets ``[n_images, V, P, 1]``) of an INR preset: each source
    image and its random affine variants (variant 0 = the original), rendered once."""
    inr = cfg.get("inr") or {}
    key = json.dumps([cfg["task"], inr, seed], sort_keys=True)
    if key not in _RENDER_CACHE:
        src = inr_images(cfg, seed)
        task = src["task"]
        aff = dict(inr.get("affine") or {})
        if "scale_range" in aff:
            aff["scale_range"] = tuple(aff["scale_range"])
        g = torch.Generator().manual_seed(seed + 15485863)
        var = affine_variants(src["images"], int(inr.get("variants", 1)), g, resolution=task.resolution, **aff)
        _RENDER_CACHE.clear()  # one preset at a time: these can be large
        _RENDER_CACHE[key] = (task.coords, images_to_targets(var))
    return _RENDER_CACHE[key]


def fit_inr_chunk(cfg: dict, ch: Chunk, writer: ZooWriter, device: str, seed: int, bar: Progress) -> None:
    """Fit the INRs of chunk ``ch`` that the zoo does not hold yet and append them."""
    runs = [r for r in ch.runs if checkpoint_id(cfg["name"], r.run, 1) not in writer.done_ids]
    if not runs:
        return
    hp = runs[0].hparams  # one preset recipe for all INRs
    spec = family_spec(ch.family, **ch.kwargs)
    coords, targets = render_targets(cfg, seed)
    img = torch.tensor([r.extra["image"] for r in runs])
    var = torch.tensor([r.extra["variant"] for r in runs])
    tgt = targets[img, var]  # [M, P, 1]
    steps = int(hp.get("steps", 500))
    ws, metrics = fit_inrs(
        init_runs(spec, runs, device), coords, tgt, lr=float(hp.get("lr", 1e-3)), steps=steps,
        stop_psnr=hp.get("stop_psnr"), optimizer=hp.get("optimizer", "adam"),
        weight_decay=float(hp.get("weight_decay", 0.0)), progress=bar.update,
    )
    m = {k: v.detach().cpu().tolist() for k, v in metrics.items()}
    records = [{
        "id": checkpoint_id(cfg["name"], r.run, 1), "run": r.run, "seed": r.seed, "task": r.task, "epoch": 1,
        "hparams": r.hparams, "metrics": {k: m[k][i] for k in m}, **r.extra,
    } for i, r in enumerate(runs)]
    writer.append(ws.to("cpu"), records)
