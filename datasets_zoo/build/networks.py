"""The networks of a build: each run's family kwargs (the architecture it trains) and
its initialization, drawn from its own seed."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch

from wspace.families import init_weight_space
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec, get_family

from .planning import Run

__all__ = ["TRAIN_HPARAMS", "arch_kwargs", "init_runs"]

# hyperparameters that are training settings (everything else that names a family kwarg shapes the spec)
TRAIN_HPARAMS = {"optimizer", "lr", "weight_decay", "momentum", "dropout", "init", "train_fraction",
                 "weight_scale", "first_layer_scale", "steps", "stop_psnr"}


def _family_default(family: str, key: str) -> Any:
    p = inspect.signature(get_family(family)).parameters.get(key)
    return None if p is None or p.default is inspect.Parameter.empty else p.default


def arch_kwargs(cfg: dict, hp: dict, task: Any) -> dict:
    """Family kwargs of one run: the preset's, the task's input/output sizes, then the
    architecture hyperparameters (``width``, ``activation``, ``hidden``, ``w0``...)."""
    fam = cfg["family"]
    params = inspect.signature(get_family(fam)).parameters
    kw = dict(cfg.get("family_kwargs") or {})
    if getattr(task, "kind", None) == "classification":
        if "num_classes" in params:
            kw["num_classes"] = task.num_classes
        if "in_features" in params:
            kw["in_features"] = task.in_features
        if "in_channels" in params:
            kw["in_channels"] = task.in_features
        if "dims" in params:
            kw["dims"] = len(task.input_shape) - 1
    for k, v in hp.items():
        if k in params and k not in TRAIN_HPARAMS and k != "dropout":
            kw[k] = v
    if "width" in hp:
        key = "channels" if "channels" in params else "hidden"
        depth = len(kw.get(key) or _family_default(fam, key) or (1,))
        kw[key] = [int(hp["width"])] * depth
    if "depth" in hp:
        key = "channels" if "channels" in params else "hidden"
        width = (kw.get(key) or _family_default(fam, key))[0]
        kw[key] = [int(width)] * int(hp["depth"])
    for k in ("hidden", "channels", "strides"):
        if k in kw and kw[k] is not None:
            kw[k] = [int(x) for x in kw[k]]
    return kw


def init_runs(spec: WeightSpaceSpec, runs: Sequence[Run], device: str) -> WeightSpace:
    """Per-run initialization, each from its own seed (a network's init does not depend
    on which others share its chunk). A loop over networks, once per chunk, off the
    training hot path."""
    parts = []
    for r in runs:
        g = torch.Generator().manual_seed(r.seed)
        scheme = r.hparams.get("init", "default")
        ws = init_weight_space(spec, 1, generator=g, scheme=None if scheme in (None, "auto") else scheme)
        # weight_scale: every weight tensor, first_layer_scale: the first layer's on top (biases keep
        # their init). Small inits put INR fitting in the feature-learning regime (see digits-inr.yaml).
        scale = float(r.hparams.get("weight_scale", 1.0))
        first = float(r.hparams.get("first_layer_scale", 1.0))
        if scale != 1.0 or first != 1.0:
            w0 = spec.layers[0].weight
            ws = WeightSpace(spec, [t * (scale * (first if i == w0 else 1.0)) if spec.params[i].role == "weight" else t
                                    for i, t in enumerate(ws.tensors)])
        parts.append(ws)
    return WeightSpace.cat(parts).to(device)
