"""Build model zoos: train populations of small networks, vectorized and resumable.

::

    wspace zoo build zoo=digits-mlp out=zoos/digits-mlp size=small

    from datasets_zoo.build import build_zoo
    build_zoo("digits-inr", "zoos/digits-inr", size="small")

A *preset* (``configs/zoo_build/zoo/<name>.yaml``) says what to train: the task(s), the
architecture family, the hyperparameter search (a grid as in the Model Zoos paper, or
random sampling as in the Small CNN Zoo), epochs and which epochs to save. Its top-level
values are the full size; ``sizes.small`` overrides some of them for a quick zoo.

:func:`plan_runs` expands a preset into a deterministic list of runs (seed,
hyperparameters, task). Runs are grouped by architecture (activation and width change
the spec; dropout, learning rate, weight decay, optimizer and init do not) and trained
``chunk_size`` at a time in one vectorized loop (:mod:`datasets_zoo.train_vectorized`).
Every saved epoch of a chunk is appended to the zoo as one shard as soon as it exists.

Resuming: a checkpoint id is ``<preset>/<run:06d>/e<epoch>`` (INRs: ``e1``). Restarting
the same build skips chunks whose checkpoints are all present, retrains a partly
written chunk from scratch (deterministically: same seeds, same weights) and appends
only the missing checkpoints. A build with a different configuration refuses an
existing zoo.

Records: ``id``, ``run``, ``seed``, ``task``, ``epoch``, ``hparams`` (architecture and
training settings), ``metrics`` (classifiers: ``train_loss``, ``train_acc``,
``test_loss``, ``test_acc``, ``diverged``; INRs: ``psnr``, ``mse``, ``steps``,
``diverged``), plus ``split`` (class-subset tasks: ``train``/``heldout``; INRs:
``train``/``val``/``test`` by source image) and, for INRs, ``label``, ``image``,
``source_index``, ``variant``, ``view``. ``meta["builder"]`` holds the resolved preset.

CLI config (``configs/zoo_build.yaml``): ``zoo`` (the preset group), ``out``, ``size``
(``small``/``full``, default ``full``), ``seed``, ``device``, optional ``chunk_size`` and
``progress``; preset values are overridden as ``zoo.<key>=...``.
"""
from __future__ import annotations

import copy
import inspect
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from wspace.config import to_plain
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import get_family

from wspace.families import family_spec, init_weight_space
from .format import ZOO_JSON, ZooWriter
from .tasks import affine_variants, get_task, images_to_targets, subset_tasks
from .train_vectorized import OPTIMIZERS, ClassifierData, counter_bits, fit_inrs, train_classifiers

__all__ = ["Run", "preset_names", "load_preset", "plan_runs", "build_zoo", "BUILDER_VERSION"]

BUILDER_VERSION = 1
SIZES = ("small", "full")
_KINDS = ("classifier", "inr")
_PRESET_KEYS = {
    "name", "description", "kind", "task", "tasks", "family", "family_kwargs", "hparams", "search", "epochs",
    "save_epochs", "batch_size", "chunk_size", "inr", "sizes",
}
# hyperparameters that are training settings (everything else that names a family kwarg shapes the spec)
_TRAIN_HPARAMS = {"optimizer", "lr", "weight_decay", "momentum", "dropout", "init", "train_fraction",
                  "weight_scale", "first_layer_scale", "steps", "stop_psnr"}
_DEFAULT_HPARAMS = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "dropout": 0.0,
                    "init": "default", "train_fraction": 1.0}
_STREAM_SUBSET = 3  # counter-hash stream of the train_fraction subsample


# --------------------------------------------------------------------------- presets
def preset_names() -> list[str]:
    """The presets shipped in ``configs/zoo_build/zoo/``."""
    d = resources.files("configs") / "zoo_build" / "zoo"
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml"))


def _deep_merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_preset(preset: str | Mapping, size: str = "full", overrides: Mapping | None = None) -> dict:
    """A preset as a plain dict, with ``sizes[size]`` and then ``overrides`` merged in.

    ``preset`` is a preset name (``configs/zoo_build/zoo/<name>.yaml``), a path to a YAML file, or
    a mapping (e.g. the ``zoo`` node of the Hydra config).
    """
    if size not in SIZES:
        raise WeightSpaceError(f"size must be one of {SIZES}, got {size!r}")
    if isinstance(preset, str):
        from omegaconf import OmegaConf

        path = Path(preset)
        if not (path.suffix in (".yaml", ".yml") and path.is_file()):
            f = resources.files("configs") / "zoo_build" / "zoo" / f"{preset}.yaml"
            if not f.is_file():
                raise WeightSpaceError(f"unknown zoo preset '{preset}'; known: {preset_names()}")
            path = Path(str(f))
        cfg = to_plain(OmegaConf.load(path))
    else:
        cfg = to_plain(preset)
    if not isinstance(cfg, dict):
        raise WeightSpaceError(f"a zoo preset must be a mapping, got {type(cfg).__name__}")
    sizes = cfg.pop("sizes", None) or {}
    cfg = _deep_merge(cfg, sizes.get(size) or {})
    if overrides:
        cfg = _deep_merge(cfg, to_plain(overrides))
    _validate(cfg)
    return cfg


def _validate(cfg: dict) -> None:
    name = cfg.get("name", "?")
    unknown = set(cfg) - _PRESET_KEYS
    if unknown:
        raise WeightSpaceError(f"zoo preset '{name}': unknown key(s) {sorted(unknown)}; known: {sorted(_PRESET_KEYS)}")
    for k in ("name", "kind", "task", "family"):
        if k not in cfg:
            raise WeightSpaceError(f"zoo preset '{name}': missing key '{k}'")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(cfg["name"])):
        raise WeightSpaceError(f"zoo preset name '{cfg['name']}' may only use letters, digits, '_', '.', '-'")
    if cfg["kind"] not in _KINDS:
        raise WeightSpaceError(f"zoo preset '{name}': kind must be one of {_KINDS}, got {cfg['kind']!r}")
    if float((cfg.get("family_kwargs") or {}).get("dropout", 0.0)) != 0.0:
        raise WeightSpaceError(f"zoo preset '{name}': set dropout in hparams/search, not family_kwargs "
                               "(dropout is a training setting; stored networks are the eval-mode architecture)")
    if cfg["kind"] == "classifier":
        for k in ("epochs", "batch_size"):
            if not isinstance(cfg.get(k), int) or cfg[k] < 1:
                raise WeightSpaceError(f"zoo preset '{name}': '{k}' must be a positive integer")
        bad = [e for e in cfg.get("save_epochs", []) if not (isinstance(e, int) and 0 <= e <= cfg["epochs"])]
        if bad or not cfg.get("save_epochs"):
            raise WeightSpaceError(f"zoo preset '{name}': save_epochs must be a non-empty list of epochs in "
                                   f"0..{cfg['epochs']}, got {cfg.get('save_epochs')}")
    opt = (cfg.get("hparams") or {}).get("optimizer")
    if opt is not None and opt not in OPTIMIZERS:
        raise WeightSpaceError(f"zoo preset '{name}': optimizer must be one of {OPTIMIZERS}, got {opt!r}")


# --------------------------------------------------------------------------- planning
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
    base = {**_DEFAULT_HPARAMS, **(cfg.get("hparams") or {})} if cfg["kind"] == "classifier" else \
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


def _subset_split(cfg: dict, seed: int) -> tuple[list[str], list[str]]:
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
    combos = _hparam_sets(cfg, seed)
    seeds = int(search.get("seeds", 1)) if search.get("mode", "grid") == "grid" else 1
    extras: list[tuple[str, dict]]
    if cfg.get("tasks"):
        train, held = _subset_split(cfg, seed)
        lim = cfg["tasks"].get("limit")
        if lim is not None:  # a small zoo keeps both sides of the split
            n_held = max(1, int(lim) // 2)
            train, held = train[: max(1, int(lim) - n_held)], held[:n_held]
        extras = [(t, {"split": "train"}) for t in train] + [(t, {"split": "heldout"}) for t in held]
    else:
        extras = [(cfg["task"], {})]
    runs = []
    for task, extra in extras:
        for hp in combos:
            for _ in range(seeds):
                r = len(runs)
                runs.append(Run(r, _run_seed(seed, r), task, dict(hp), dict(extra)))
    limit = search.get("limit")
    if limit is not None and limit < len(runs):  # deterministic subsample, renumbered
        keep = np.sort(np.random.RandomState(seed + 1).choice(len(runs), int(limit), replace=False))
        runs = [Run(i, _run_seed(seed, i), runs[k].task, runs[k].hparams, runs[k].extra) for i, k in enumerate(keep)]
    return runs


def _inr_images(cfg: dict, seed: int) -> dict:
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
    src = _inr_images(cfg, seed)
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


# --------------------------------------------------------------------------- architectures
def _family_default(family: str, key: str) -> Any:
    p = inspect.signature(get_family(family)).parameters.get(key)
    return None if p is None or p.default is inspect.Parameter.empty else p.default


def _arch_kwargs(cfg: dict, hp: dict, task: Any) -> dict:
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
        if k in params and k not in _TRAIN_HPARAMS and k != "dropout":
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


def _init(spec, runs: Sequence[Run], device: str) -> WeightSpace:
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


# --------------------------------------------------------------------------- building
def _ckpt_id(name: str, run: int, epoch: int) -> str:
    return f"{name}/{run:06d}/e{epoch}"


def _base_task(name: str) -> str:
    """The pooled dataset of a class-subset task: ``digits:0-3@image`` -> ``digits@image``."""
    return re.sub(r":[0-9-]+", "", name)


class _Progress:
    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            # fractional progress within a chunk (epochs): show whole networks
            self.bar = tqdm(total=total, desc=desc, unit="model", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")

    def update(self, n: float) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish_chunk(self, done_before: float, m: int) -> None:
        """Round the bar to whole networks at the end of a chunk."""
        if self.bar is not None:
            self.bar.n = done_before + m
            self.bar.refresh()

    @property
    def n(self) -> float:
        return self.bar.n if self.bar is not None else 0.0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class _Chunk:
    index: int
    kwargs: dict
    runs: list[Run]


def _chunks(cfg: dict, runs: Sequence[Run], chunk_size: int) -> list[_Chunk]:
    """Group runs by architecture (first-appearance order), order each group by optimizer
    (so the vectorized optimizer updates few contiguous slices), and cut it into chunks."""
    groups: dict[str, list[tuple[dict, Run]]] = {}
    for r in runs:
        task = get_task(r.task)
        kw = _arch_kwargs(cfg, r.hparams, task)
        key = json.dumps([_base_task(r.task), kw], sort_keys=True)
        groups.setdefault(key, []).append((kw, r))
    out: list[_Chunk] = []
    for members in groups.values():
        members.sort(key=lambda kr: (OPTIMIZERS.index(kr[1].hparams.get("optimizer", "adam")), kr[1].run))
        for s in range(0, len(members), chunk_size):
            part = members[s:s + chunk_size]
            out.append(_Chunk(len(out), part[0][0], [r for _, r in part]))
    return out


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
        train, held = _subset_split(cfg, seed)
        meta["splits"] = {"train_tasks": train, "heldout_tasks": held,
                          "built_train_tasks": sorted({r.task for r in runs if r.extra.get("split") == "train"}),
                          "built_heldout_tasks": sorted({r.task for r in runs if r.extra.get("split") == "heldout"})}
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
        progress: show a tqdm progress bar.
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
    chunks = _chunks(cfg, runs, chunk_size)
    name = cfg["name"]
    epochs = sorted(set(cfg.get("save_epochs", []))) if cfg["kind"] == "classifier" else [1]

    writer = ZooWriter(out, meta)
    try:
        todo = []
        for ch in chunks:
            missing = {e for r in ch.runs for e in epochs if _ckpt_id(name, r.run, e) not in writer.done_ids}
            if missing:
                todo.append((ch, sorted(missing)))
        bar = _Progress(sum(len(ch.runs) for ch, _ in todo), f"zoo {name}", progress)
        try:
            for ch, missing in todo:
                before = bar.n
                if cfg["kind"] == "classifier":
                    _train_classifier_chunk(cfg, ch, missing, writer, device, bar)
                else:
                    _fit_inr_chunk(cfg, ch, writer, device, seed, bar)
                bar.finish_chunk(before, len(ch.runs))
                if on_chunk_done is not None:
                    on_chunk_done(ch.index)
        finally:
            bar.close()
    finally:
        writer.close()
    return out


# --------------------------------------------------------------------------- classifier chunks
_LABEL_CACHE: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _task_labels(base_name: str, task_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels of ``task_name`` over the samples of its pooled dataset (``-1``: not in the
    task), for the train and the test split."""
    key = (base_name, task_name)
    if key not in _LABEL_CACHE:
        base, task = get_task(base_name), get_task(task_name)
        rows = []
        for b_idx, t_idx, t_y in ((base.index_train, task.index_train, task.y_train),
                                  (base.index_test, task.index_test, task.y_test)):
            y = torch.full((len(b_idx),), -1, dtype=torch.int64)
            pos = torch.searchsorted(b_idx, t_idx)
            if not bool((b_idx[pos.clamp_max(len(b_idx) - 1)] == t_idx).all()):
                raise WeightSpaceError(f"task '{task_name}' is not a subset of '{base_name}'")
            y[pos] = t_y
            rows.append(y)
        _LABEL_CACHE[key] = (rows[0], rows[1])
    return _LABEL_CACHE[key]


def _subsample(y: torch.Tensor, seeds: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """Keep a per-run random ``fraction`` of each run's training samples (``-1`` the rest)."""
    if bool((fraction >= 1.0).all()):
        return y
    member = y >= 0
    keys = counter_bits(seeds, (_STREAM_SUBSET,), y.shape[1])
    keys = torch.where(member, keys, keys + (1 << 33))
    rank = torch.argsort(torch.argsort(keys, dim=1, stable=True), dim=1)
    keep = rank < torch.ceil(fraction * member.sum(1)).long()[:, None]
    return torch.where(keep & member, y, torch.full_like(y, -1))


def _train_classifier_chunk(cfg: dict, ch: _Chunk, missing: list[int], writer: ZooWriter, device: str,
                            bar: _Progress) -> None:
    runs = ch.runs
    M = len(runs)
    base_name = _base_task(runs[0].task)
    base = get_task(base_name)
    spec = family_spec(cfg["family"], **ch.kwargs)
    hp = [r.hparams for r in runs]
    seeds = torch.tensor([r.seed for r in runs], dtype=torch.int64)
    ytr = torch.stack([_task_labels(base_name, r.task)[0] for r in runs])
    yte = torch.stack([_task_labels(base_name, r.task)[1] for r in runs])
    frac = torch.tensor([float(h.get("train_fraction", 1.0)) for h in hp])
    ytr = _subsample(ytr, seeds, frac)
    data = ClassifierData(base.x_train.to(device), ytr.to(device), base.x_test.to(device), yte.to(device))
    vec = lambda k: torch.tensor([float(h[k]) for h in hp], device=device)  # noqa: E731
    name = cfg["name"]
    epochs_run = max(missing)

    def on_save(epoch: int, ws: WeightSpace, metrics: dict[str, torch.Tensor]) -> None:
        ids = [_ckpt_id(name, r.run, epoch) for r in runs]
        rows = [i for i, rid in enumerate(ids) if rid not in writer.done_ids]
        if not rows:
            return
        m = {k: v.detach().cpu().tolist() for k, v in metrics.items()}
        records = []
        for i in rows:
            r = runs[i]
            records.append({
                "id": ids[i], "run": r.run, "seed": r.seed, "task": r.task, "epoch": epoch,
                "hparams": r.hparams, "metrics": {k: m[k][i] for k in m}, **r.extra,
            })
        sel = torch.tensor(rows)
        writer.append(ws.map(lambda t: t[sel].cpu()), records)

    train_classifiers(
        _init(spec, runs, device), data, seeds=seeds.to(device),
        optimizer=[h["optimizer"] for h in hp], lr=vec("lr"), weight_decay=vec("weight_decay"),
        momentum=vec("momentum"), dropout=vec("dropout"), epochs=epochs_run, batch_size=int(cfg["batch_size"]),
        save_epochs=missing, on_save=on_save, progress=lambda f: bar.update(f * M / max(epochs_run, 1)),
    )


# --------------------------------------------------------------------------- INR chunks
_RENDER_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _renders(cfg: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(coords ``[P, 2]``, targets ``[n_images, V, P, 1]``) of an INR preset: each source
    image and its random affine variants (variant 0 = the original), rendered once."""
    inr = cfg.get("inr") or {}
    key = json.dumps([cfg["task"], inr, seed], sort_keys=True)
    if key not in _RENDER_CACHE:
        src = _inr_images(cfg, seed)
        task = src["task"]
        aff = dict(inr.get("affine") or {})
        if "scale_range" in aff:
            aff["scale_range"] = tuple(aff["scale_range"])
        g = torch.Generator().manual_seed(seed + 15485863)
        var = affine_variants(src["images"], int(inr.get("variants", 1)), g, resolution=task.resolution, **aff)
        _RENDER_CACHE.clear()  # one preset at a time: these can be large
        _RENDER_CACHE[key] = (task.coords, images_to_targets(var))
    return _RENDER_CACHE[key]


def _fit_inr_chunk(cfg: dict, ch: _Chunk, writer: ZooWriter, device: str, seed: int, bar: _Progress) -> None:
    runs = [r for r in ch.runs if _ckpt_id(cfg["name"], r.run, 1) not in writer.done_ids]
    if not runs:
        return
    hp = runs[0].hparams  # one preset recipe for all INRs
    spec = family_spec(cfg["family"], **ch.kwargs)
    coords, targets = _renders(cfg, seed)
    img = torch.tensor([r.extra["image"] for r in runs])
    var = torch.tensor([r.extra["variant"] for r in runs])
    tgt = targets[img, var]  # [M, P, 1]
    steps = int(hp.get("steps", 500))
    ws, metrics = fit_inrs(
        _init(spec, runs, device), coords, tgt, lr=float(hp.get("lr", 1e-3)), steps=steps,
        stop_psnr=hp.get("stop_psnr"), optimizer=hp.get("optimizer", "adam"),
        weight_decay=float(hp.get("weight_decay", 0.0)), progress=bar.update,
    )
    m = {k: v.detach().cpu().tolist() for k, v in metrics.items()}
    records = [{
        "id": _ckpt_id(cfg["name"], r.run, 1), "run": r.run, "seed": r.seed, "task": r.task, "epoch": 1,
        "hparams": r.hparams, "metrics": {k: m[k][i] for k in m}, **r.extra,
    } for i, r in enumerate(runs)]
    writer.append(ws.to("cpu"), records)


# --------------------------------------------------------------------------- CLI
