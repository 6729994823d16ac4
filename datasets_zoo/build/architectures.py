"""Presets with several architectures: the ``architectures:`` key of a classifier preset.

::

    architectures:                       # name -> how to build it (replaces family / family_kwargs)
      mlp-64-32-5: {family: mlp, family_kwargs: {hidden: [32], activation: relu}}
      cnn-8-16:
        family: small_cnn
        family_kwargs: {channels: [8, 16], strides: [1, 2], kernel_size: 3}
        view: image                      # the task's image view: digits:0-1-2-3-4@image
        hparams: {lr: 1.0e-2}            # merged over the preset's hparams
    tasks:
      heldout_pair_fraction: 0.2         # of the training tasks, each with one architecture held out

Every (task, hyperparameters, seed) of the preset is trained once per architecture. A run's
architecture is ``Run.extra["architecture"]`` and so a field of its records; its task is the
preset's task in the architecture's ``view`` (``<task>@image``).

Held-out pairs (class-subset presets): a seeded ``heldout_pair_fraction`` of the built training
tasks each get one architecture (cycling through the architectures in a seeded order) whose
runs are marked ``split: heldout_pair``; that task is seen in training only with the other
architectures. The zoo meta lists them as ``meta["splits"]["heldout_pairs"]``
(``[[record task, architecture], ...]``) and describes each architecture in
``meta["architectures"]``.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Mapping, Sequence

import numpy as np

from wspace.errors import WeightSpaceError
from wspace.spec import get_family

from ..tasks.names import canonical_name, parse_task_name
from ..train_vectorized import OPTIMIZERS

__all__ = [
    "ARCHITECTURE_KEYS", "HELDOUT_PAIR", "architecture_names", "architecture_config", "architecture_task",
    "validate_architectures", "heldout_pairs", "architectures_meta", "built_heldout_pairs",
]

ARCHITECTURE_KEYS = ("family", "family_kwargs", "view", "hparams")
HELDOUT_PAIR = "heldout_pair"  # the split of a held-out (task, architecture) pair's runs


def architecture_names(cfg: Mapping) -> list[str]:
    """The architecture names of a preset, in preset order (empty: a one-architecture preset)."""
    return list(cfg.get("architectures") or {})


def architecture_config(cfg: dict, name: str | None) -> dict:
    """The preset as seen by one architecture: its ``family``, ``family_kwargs`` and
    ``hparams`` (the architecture's merged over the preset's). ``name=None`` (a
    one-architecture preset or run) returns ``cfg`` itself."""
    if name is None:
        return cfg
    archs = cfg.get("architectures") or {}
    if name not in archs:
        raise WeightSpaceError(f"zoo preset '{cfg.get('name', '?')}': no architecture '{name}' "
                               f"(architectures: {list(archs)})")
    a = archs[name]
    out = {k: v for k, v in cfg.items() if k != "architectures"}
    out["family"] = a["family"]
    out["family_kwargs"] = copy.deepcopy(a.get("family_kwargs") or {})
    out["hparams"] = {**copy.deepcopy(cfg.get("hparams") or {}), **copy.deepcopy(a.get("hparams") or {})}
    return out


def architecture_task(cfg: Mapping, name: str | None, task: str) -> str:
    """``task`` in the ``view`` of architecture ``name`` (``digits:0-1-2-3-4`` ->
    ``digits:0-1-2-3-4@image``); unchanged without a view."""
    if name is None:
        return task
    view = (cfg.get("architectures") or {})[name].get("view")
    if view is None:
        return task
    base, classes, _ = parse_task_name(task)
    name = canonical_name(base, classes, str(view))
    parse_task_name(name)  # a view the dataset does not have raises here
    return name


def validate_architectures(cfg: Mapping) -> None:
    """Check the ``architectures`` node of a preset (names, keys, families, views,
    hyperparameters); raises :class:`WeightSpaceError` naming the preset and the entry."""
    archs = cfg.get("architectures")
    if archs is None:
        return
    pname = cfg.get("name", "?")
    where = f"zoo preset '{pname}': architectures"
    if not isinstance(archs, Mapping) or not archs:
        raise WeightSpaceError(f"{where} must be a non-empty mapping name -> {{family, family_kwargs, view, hparams}}")
    if cfg.get("kind") != "classifier":
        raise WeightSpaceError(f"{where}: only classifier presets may list several architectures")
    for key in ("family", "family_kwargs"):
        if key in cfg:
            raise WeightSpaceError(f"zoo preset '{pname}': set '{key}' per architecture under 'architectures', "
                                   "not at the top level, when the preset lists architectures")
    for name, a in archs.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            raise WeightSpaceError(f"{where}: name '{name}' may only use letters, digits, '_', '.', '-'")
        if not isinstance(a, Mapping) or "family" not in a:
            raise WeightSpaceError(f"{where}.{name} must be a mapping with a 'family' (and optionally "
                                   f"{list(ARCHITECTURE_KEYS[1:])})")
        unknown = set(a) - set(ARCHITECTURE_KEYS)
        if unknown:
            raise WeightSpaceError(f"{where}.{name}: unknown key(s) {sorted(unknown)}; known: {list(ARCHITECTURE_KEYS)}")
        try:
            get_family(str(a["family"]))
        except WeightSpaceError as e:  # the registry's own message names the known families
            raise WeightSpaceError(f"{where}.{name}: {e}") from e
        fk = a.get("family_kwargs") or {}
        if not isinstance(fk, Mapping):
            raise WeightSpaceError(f"{where}.{name}.family_kwargs must be a mapping")
        if float(fk.get("dropout", 0.0)) != 0.0:
            raise WeightSpaceError(f"{where}.{name}: set dropout in hparams/search, not family_kwargs")
        hp = a.get("hparams") or {}
        if not isinstance(hp, Mapping):
            raise WeightSpaceError(f"{where}.{name}.hparams must be a mapping")
        if hp.get("optimizer") is not None and hp["optimizer"] not in OPTIMIZERS:
            raise WeightSpaceError(f"{where}.{name}: optimizer must be one of {OPTIMIZERS}, got {hp['optimizer']!r}")
        if a.get("view") is not None:
            try:
                architecture_task(cfg, str(name), str(cfg["task"]))
            except WeightSpaceError as e:
                raise WeightSpaceError(f"{where}.{name}: view '{a['view']}' does not apply to task "
                                       f"'{cfg.get('task')}': {e}") from e
    frac = float((cfg.get("tasks") or {}).get("heldout_pair_fraction", 0.0) or 0.0)
    if not 0.0 <= frac < 1.0:
        raise WeightSpaceError(f"zoo preset '{pname}': tasks.heldout_pair_fraction must be in [0, 1), got {frac}")


def heldout_pairs(cfg: Mapping, train_tasks: Sequence[str], seed: int) -> set[tuple[str, str]]:
    """The held-out (task, architecture) pairs among ``train_tasks`` (the built training
    tasks, pooled-view names): a seeded ``tasks.heldout_pair_fraction`` of them (at least
    one when the fraction is positive), each paired with one architecture, the
    architectures taken in turn so that each is held out about equally often."""
    names = architecture_names(cfg)
    frac = float((cfg.get("tasks") or {}).get("heldout_pair_fraction", 0.0) or 0.0)
    if len(names) < 2 or frac <= 0.0 or len(train_tasks) < 2:
        return set()
    rs = np.random.RandomState(seed + 7927)
    perm = rs.permutation(len(train_tasks))
    order = [names[i] for i in rs.permutation(len(names))]
    n = min(len(train_tasks) - 1, max(1, int(round(frac * len(train_tasks)))))
    return {(train_tasks[int(perm[i])], order[i % len(order)]) for i in range(n)}


def built_heldout_pairs(runs: Sequence[Any]) -> list[list[str]]:
    """``[[record task, architecture], ...]`` of the runs marked ``split: heldout_pair``, sorted."""
    pairs = {(r.task, r.extra["architecture"]) for r in runs if r.extra.get("split") == HELDOUT_PAIR}
    return [list(p) for p in sorted(pairs)]


def architectures_meta(cfg: Mapping, runs: Sequence[Any]) -> dict[str, dict]:
    """``meta["architectures"]``: per architecture its family, family kwargs (as in the
    preset), view, hyperparameter overrides and number of runs."""
    out: dict[str, dict] = {}
    for name, a in (cfg.get("architectures") or {}).items():
        out[name] = {"family": a["family"], "family_kwargs": dict(a.get("family_kwargs") or {}),
                     "view": a.get("view"), "hparams": dict(a.get("hparams") or {}),
                     "runs": sum(1 for r in runs if r.extra.get("architecture") == name)}
    return out
