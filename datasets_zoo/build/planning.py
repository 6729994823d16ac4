"""Planning a build: a resolved preset expanded into a deterministic list of runs
(seed, hyperparameters, task, data fields)."""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from wspace.errors import WeightSpaceError

from ..tasks import get_task, subset_tasks
from .architectures import HELDOUT_PAIR, architecture_config, architecture_names, architecture_task, heldout_pairs

__all__ = ["Run", "DEFAULT_HPARAMS", "plan_runs", "subset_split", "inr_images"]

# training settings of a classifier run that its preset does not set
DEFAULT_HPARAMS = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "dropout": 0.0,
                   "init": "default", "train_fraction": 1.0}


@dataclass(frozen=True)
class Run:
    """One network to train: ``hparams`` holds every setting (architecture and
    training), ``extra`` fields that describe its data (INR image, split...)."""

    run: int
    seed: int
    task: str
    hparams: dict
    extra: dict = field(default_factory=dict)


def _run_seed(seed: int, run: int) -> int:
    """Distinct, reproducible per-run seed (fits in 63 bits)."""
    return int(seed) * 1_000_003 + int(run)


def _sample(spec: Any, rs: np.random.RandomState, key: str) -> Any:
    """One draw of a random-search entry: a list (choice), ``{uniform: [a, b]}``,
    ``{log_uniform: [a, b]}``, ``{int_uniform: [a, b]}`` or a constant."""
    if isinstance(spec, list):
        return copy.deepcopy(spec[rs.randint(len(spec))])
    if isinstance(spec, Mapping) and len(spec) == 1:
        (dist, args), = spec.items()
        if dist == "uniform":
            return float(rs.uniform(*args))
        if dist == "log_uniform":
            return float(math.exp(rs.uniform(math.log(args[0]), math.log(args[1]))))
        if dist == "int_uniform":
            return int(rs.randint(args[0], args[1] + 1))
        raise WeightSpaceError(f"search space '{key}': unknown distribution '{dist}' "
                               "(use a list, uniform, log_uniform or int_uniform)")
    return copy.deepcopy(spec)


def _hparam_sets(cfg: dict, seed: int) -> list[dict]:
    """The hyperparameter combinations of the search (without seeds)."""
    search = cfg.get("search") or {}
    mode = search.get("mode", "grid")
    space = search.get("space") or {}
    base = {**DEFAULT_HPARAMS, **(cfg.get("hparams") or {})} if cfg["kind"] == "classifier" else \
        dict(cfg.get("hparams") or {})
    if mode == "grid":
        keys = list(space)
        for k in keys:
            if not isinstance(space[k], list) or not space[k]:
                raise WeightSpaceError(f"grid search '{k}': values must be a non-empty list")
        return [{**base, **dict(zip(keys, vals))} for vals in itertools.product(*(space[k] for k in keys))]
    if mode == "random":
        n = int(search.get("runs", 0))
        if n < 1:
            raise WeightSpaceError("random search needs search.runs >= 1")
        rs = np.random.RandomState(seed)
        return [{**base, **{k: _sample(v, rs, k) for k, v in space.items()}} for _ in range(n)]
    raise WeightSpaceError(f"search.mode must be 'grid' or 'random', got {mode!r}")


def subset_split(cfg: dict, seed: int) -> tuple[list[str], list[str]]:
    """(training tasks, held-out tasks) of a class-subset preset: a fixed seeded split of
    all ``C(n, k)`` subsets, so held-out class subsets never appear in training."""
    t = cfg["tasks"]
    names = subset_tasks(int(t["subsets"]), base=cfg["task"])
    rs = np.random.RandomState(seed + 7919)
    perm = rs.permutation(len(names))
    n_held = int(round(float(t.get("heldout_fraction", 0.2)) * len(names)))
    held = sorted(names[i] for i in perm[:n_held])
    train = sorted(names[i] for i in perm[n_held:])
    return train, held


def plan_runs(cfg: dict, seed: int = 0) -> list[Run]:
    """Expand a resolved preset (:func:`load_preset`) into its runs, in a fixed order."""
    if cfg["kind"] == "inr":
        return _plan_inr(cfg, seed)
    search = cfg.get("search") or {}
    seeds = int(search.get("seeds", 1)) if search.get("mode", "grid") == "grid" else 1
    extras: list[tuple[str, dict]]
    train: list[str] = []
    if cfg.get("tasks"):
        train, held = subset_split(cfg, seed)
        lim = cfg["tasks"].get("limit")
        if lim is not None:  # a small zoo keeps both sides of the split (heldout_limit of them held out)
            n_held = int(cfg["tasks"].get("heldout_limit") or max(1, int(lim) // 2))
            n_train = max(1, int(lim) - n_held)
            if cfg["tasks"].get("limit_sample"):  # a seeded sample of each side, else the first names
                rs = np.random.RandomState(seed + 7933)
                train = sorted(train[i] for i in rs.permutation(len(train))[:n_train])
                held = sorted(held[i] for i in rs.permutation(len(held))[:n_held])
            train, held = train[:n_train], held[:n_held]
        extras = [(t, {"split": "train"}) for t in train] + [(t, {"split": "heldout"}) for t in held]
    else:
        extras = [(cfg["task"], {})]
    # one pass per architecture (presets with `architectures:`, see .architectures), else one pass
    archs: list[str | None] = list(architecture_names(cfg)) or [None]
    pairs = heldout_pairs(cfg, train, seed)
    runs = []
    for arch in archs:
        combos = _hparam_sets(architecture_config(cfg, arch), seed)
        for task, extra in extras:
            if arch is not None:
                extra = {**extra, "architecture": arch}
                if (task, arch) in pairs:
                    extra["split"] = HELDOUT_PAIR
                task = architecture_task(cfg, arch, task)
            for hp in combos:
                for _ in range(seeds):
                    r = len(runs)
                    runs.append(Run(r, _run_seed(seed, r), task, dict(hp), dict(extra)))
    limit = search.get("limit")
    if limit is not None and limit < len(runs):  # deterministic subsample, renumbered
        keep = np.sort(np.random.RandomState(seed + 1).choice(len(runs), int(limit), replace=False))
        runs = [Run(i, _run_seed(seed, i), runs[k].task, runs[k].hparams, runs[k].extra) for i, k in enumerate(keep)]
    return runs


def inr_images(cfg: dict, seed: int) -> dict:
    """Source images of an INR preset and their split (train / val / test by image)."""
    task = get_task(cfg["task"])
    inr = cfg.get("inr") or {}
    n_tr, n_te = len(task.labels_train), len(task.labels_test)
    pos_tr, pos_te = np.arange(n_tr), np.arange(n_te)
    per = inr.get("images_per_split")
    if per is not None:
        pos_tr, pos_te = pos_tr[: 2 * int(per)], pos_te[: int(per)]
    rs = np.random.RandomState(seed + 104729)
    n_val = int(round(float(inr.get("val_fraction", 0.1)) * len(pos_tr)))
    val = set(rs.permutation(len(pos_tr))[:n_val].tolist())
    images = torch.cat([task.images_train[pos_tr], task.images_test[pos_te]])
    labels = torch.cat([task.labels_train[pos_tr], task.labels_test[pos_te]])
    source = torch.cat([task.index_train[pos_tr], task.index_test[pos_te]])
    split = ["val" if i in val else "train" for i in range(len(pos_tr))] + ["test"] * len(pos_te)
    return {"task": task, "images": images, "labels": labels, "source": source, "split": split}


def _plan_inr(cfg: dict, seed: int) -> list[Run]:
    inr = cfg.get("inr") or {}
    V, K = int(inr.get("variants", 1)), int(inr.get("views", 1))
    if V < 1 or K < 1:
        raise WeightSpaceError("inr.variants and inr.views must be >= 1")
    src = inr_images(cfg, seed)
    task = src["task"]
    hp = dict(cfg.get("hparams") or {})
    runs = []
    for i in range(len(src["images"])):
        for v in range(V):
            for k in range(K):
                r = len(runs)
                extra = {"image": i, "source_index": int(src["source"][i]), "variant": v, "view": k,
                         "label": int(task.classes[int(src["labels"][i])]), "split": src["split"][i]}
                runs.append(Run(r, _run_seed(seed, r), task.name, hp, extra))
    return runs
