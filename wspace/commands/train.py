"""``wspace train``: fit a task module on a zoo with Lightning, resume, test, write metrics.

``main(cfg)`` is the CLI target (the composed ``configs/train/train.yaml``); :func:`fit` is
the same from Python::

    from wspace.commands.train import fit
    metrics = fit("generalization", "nfn_hnp", "zoos/digits-cnn", "runs/gen-hnp",
                  trainer={"max_epochs": 20}, lr=3e-4)
    fit("inr_classification", {"_target_": "mypkg.MyEncoder", "width": 8}, "zoos/digits-inr", "runs/mine")

The task, encoder and augmentation are chosen by their configs' ``_target_``
(``configs/train/{task,encoder,augment}/<name>.yaml``); see :func:`build`.

Outputs under ``out``: ``checkpoints/`` (``last.ckpt`` every epoch, the best one by
the task's monitored validation metric), ``logs/version_*/metrics.csv`` (CSV
logger), ``curves.png`` (the logged metrics, :func:`wspace.curves.plot_curves`),
``config.yaml`` (the resolved config), ``metrics.json`` (test metrics of the best
checkpoint, plus run facts) and ``fingerprints/train.json`` (what determines the result:
the config, the zoo's fingerprint, the seed, the code version of the task, encoder and data
modules; see :mod:`wspace.fingerprint`).

Rerunning with the same ``out`` and the same settings resumes from
``checkpoints/last.ckpt``. A rerun with other settings (another learning rate, seed, zoo,
epoch count, ...) refuses before any work, naming what differs: pass a new ``out=``, or
``resume=force`` to continue from the old checkpoint anyway (e.g. to train a finished run
for more epochs; ``metrics.json`` then lists what was forced), or ``overwrite=true``
(``resume=false`` too) to delete the old run and start over.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from datasets_zoo import Zoo
from datasets_zoo.datamodule import ZooDataModule
from wspace import interrupt
from wspace.checkpoints import AtomicCheckpointIO, SaveOnInterrupt, check_checkpoint
from wspace.commands.checks import Option, check_against_signature, check_config, check_trainer, check_value
from wspace.config import compose_config, group_options
from wspace.config import to_plain as plain
from wspace.devices import trainer_device
from wspace.errors import WeightSpaceError
from wspace.progress import fitting_log_interval, progress_callbacks
from wspace.tasks import WeightSpaceTask, resolve_encoder

__all__ = ["DATA_KEYS", "RUN_KEYS", "RUN_ARTIFACTS", "main", "run", "fit", "build", "augment_from_config",
           "encoder_config", "task_class", "run_settings", "check_train_config"]

#: keys of a ``configs/train/task`` node read by the data module
DATA_KEYS = ("target", "split_by", "split_seed", "filter", "spec_id", "batch_size", "eval_batch_size", "num_workers")
#: keys of a ``configs/train/task`` node read by the run (label, early stopping, time cap)
RUN_KEYS = ("name", "description", "patience", "monitor", "mode", "max_time")
#: what a run writes under ``out``: checked against its fingerprint, deleted by ``overwrite=true``
RUN_ARTIFACTS = ("checkpoints", "logs", "metrics.json", "config.yaml", "curves.png")
# config keys that say where and how a run executes, not what it computes (not fingerprinted)
_UNFINGERPRINTED = ("out", "resume", "overwrite", "device", "zoo")
# packages whose classes are fingerprinted by their whole subpackage (wspace.nn, wspace.tasks, ...)
_OUR_PACKAGES = ("wspace", "datasets_zoo", "generators")


def _options(group: str) -> list[str]:
    return group_options("train", group)


def encoder_config(encoder: str | Mapping[str, Any]) -> dict[str, Any]:
    """A ``configs/train/encoder`` option (or a config mapping) -> its config: a plain dict
    with ``_target_`` (the encoder class) and the constructor options."""
    return resolve_encoder(encoder)


def task_class(task: Mapping[str, Any]) -> type[WeightSpaceTask]:
    """The :class:`~wspace.tasks.WeightSpaceTask` subclass a ``configs/train/task`` node names with ``_target_``."""
    from hydra.utils import get_class

    target = task.get("_target_")
    if not isinstance(target, str):
        if task.get("name") == "generate":
            raise WeightSpaceError("task=generate trains a weight generator: add generator=<name> "
                                   f"(available: {', '.join(_options('generator'))})")
        raise WeightSpaceError(f"task '{task.get('name', '?')}' has no _target_ (the task's LightningModule class); "
                               f"available tasks: {', '.join(_options('task'))}")
    try:
        cls = get_class(target)
    except Exception as e:
        raise WeightSpaceError(f"task _target_ '{target}' does not name an importable class "
                               f"({str(e).splitlines()[0]})") from e
    if not (isinstance(cls, type) and issubclass(cls, WeightSpaceTask)):
        raise WeightSpaceError(f"task _target_ '{target}' is not a wspace.tasks.WeightSpaceTask subclass")
    return cls


def _task_label(task: Mapping[str, Any]) -> str:
    return str(task.get("name") or str(task.get("_target_", "?")).rsplit(".", 1)[-1])


def main(cfg: Any) -> dict | Any:
    """The ``wspace train`` target: generator training if ``generator=`` is set, else :func:`run`."""
    if cfg.get("generator") is not None:
        from .train_generator import main as train_generator

        return train_generator(cfg)
    return run(cfg)


def _task_and_encoder(cfg: Any) -> tuple[Any, Any]:
    task = cfg.get("task")
    if not isinstance(task, Mapping) or ("name" not in task and "_target_" not in task):
        raise WeightSpaceError(f"pick a task with task=<name> (available: {', '.join(_options('task'))})")
    task_class(task)
    enc = cfg.get("encoder")
    if not isinstance(enc, Mapping) or "_target_" not in enc:
        raise WeightSpaceError(f"task '{_task_label(task)}' needs an encoder: encoder=<name> "
                               f"(available: {', '.join(_options('encoder'))})")
    return task, enc


def augment_from_config(aug: str | Mapping[str, Any], seed: int = 0) -> Callable[[ZooDataModule], tuple[Any, Any]]:
    """A ``configs/train/augment`` option (its name, or its node: ``_target_`` = a recipe
    function of :mod:`wspace.augment.recipes` or any callable of the same signature, plus
    its options) -> ``augment(dm) -> (transform, collate)`` for :func:`build`."""
    from hydra.utils import instantiate

    from wspace.augment import MixUpCollate

    if isinstance(aug, str):
        if aug not in _options("augment"):
            raise WeightSpaceError(f"unknown augmentation recipe '{aug}' (available: {', '.join(_options('augment'))})")
        aug = compose_config("train", [f"augment={aug}"]).augment
    if not isinstance(aug, Mapping) or not isinstance(aug.get("_target_"), str):
        raise WeightSpaceError("augment must name a recipe with _target_ (augment=<name>, options: "
                               f"{', '.join(_options('augment'))})")
    node = plain(aug)
    try:
        recipe = instantiate(node, _partial_=True)
    except Exception as e:
        raise WeightSpaceError(f"augment _target_ '{node['_target_']}' cannot be resolved "
                               f"({str(e).splitlines()[0]})") from e

    def hooks(dm: ZooDataModule) -> tuple[Any, Any]:
        try:
            k = dm.num_classes
        except WeightSpaceError:  # a regression target: Mixup mixes the values themselves
            k = None
        try:
            transform, mixup = recipe(stats=dm.stats, num_classes=k, seed=seed)
        except TypeError as e:
            raise WeightSpaceError(f"augment {node['_target_']}: bad options "
                                   f"{sorted(set(node) - {'_target_'})}: {e}") from e
        collate = None if mixup is None else MixUpCollate(mixup, num_classes=k, generator=seed)
        return transform, collate

    return hooks


def build(cfg: Any, zoo: Any = None, augment: Callable[[ZooDataModule], tuple[Any, Any]] | None = None
          ) -> tuple[ZooDataModule, Any]:
    """The data module and the task module that ``cfg`` describes (seeded with ``cfg.seed``).

    ``cfg.task._target_`` names the task class (built with its ``from_datamodule``, the
    task node's keys other than :data:`DATA_KEYS` and :data:`RUN_KEYS` as options) and
    ``cfg.encoder`` is the encoder config it builds its encoder from.
    ``augment(dm) -> (transform, collate)`` (either may be None) sets the data module's
    train-only hooks once it exists, so transforms can use ``dm.stats`` (e.g.
    :class:`wspace.augment.Denormalized`) and Mixup can use ``dm.num_classes``.
    """
    import lightning as L

    task, enc = _task_and_encoder(cfg)
    cls = task_class(task)
    L.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    dm = ZooDataModule(
        zoo if zoo is not None else cfg.get("zoo"), target=task.get("target"), batch_size=int(task.get("batch_size", 64)),
        eval_batch_size=task.get("eval_batch_size"), num_workers=int(task.get("num_workers", 0) or 0),
        split_by=str(task.get("split_by", "auto")), split_seed=int(task.get("split_seed", 0)),
        filter=plain(task.get("filter")), spec_id=task.get("spec_id"),
    )
    if augment is None and cfg.get("augment") is not None:
        augment = augment_from_config(cfg.augment, seed=int(cfg.get("seed", 0)))
    if augment is not None:
        dm.set_augmentation(*augment(dm))
    options = {k: v for k, v in plain(task).items() if k not in DATA_KEYS + RUN_KEYS + ("_target_",)}
    try:
        module = cls.from_datamodule(dm, encoder=plain(enc), **options)
    except TypeError as e:
        raise WeightSpaceError(f"task '{_task_label(task)}' ({cls.__qualname__}): bad options {sorted(options)}: "
                               f"{e}") from e
    return dm, module


def _trainer_kwargs(cfg: Any, task: Any) -> dict[str, Any]:
    kw = plain(cfg.get("trainer") or {})
    if kw.get("accelerator", "auto") == "auto":
        kw.update(trainer_device(cfg.get("device", "cpu")))
    if kw.get("max_time") is None:
        kw.pop("max_time", None)
        if task.get("max_time") is not None:
            kw["max_time"] = plain(task["max_time"])
    return kw


def _code_unit(target: str) -> str:
    """The module or package whose source a class's results depend on: for the library's own
    classes their subpackage (``wspace.nn.unf.UNF`` -> ``wspace.nn``), else the class's module."""
    import importlib.util

    module = target.rsplit(".", 1)[0]
    parts = module.split(".")
    if parts[0] in _OUR_PACKAGES and len(parts) >= 2:
        sub = ".".join(parts[:2])
        try:
            spec = importlib.util.find_spec(sub)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            return sub
    return module


def run_settings(cfg: Any, dm: ZooDataModule, augment: Any = None) -> dict[str, Any]:
    """What determines the result of :func:`run`: the config (less where and how it runs:
    ``out``, ``resume``, ``overwrite``, ``device``, the zoo's path, the Trainer's
    presentation settings), the zoo's fingerprint and the code version of the task, encoder,
    augmentation and data modules."""
    from datasets_zoo.source import zoo_fingerprint
    from wspace.fingerprint import TRAINER_PRESENTATION, code_version

    config = {k: v for k, v in plain(cfg).items() if k not in _UNFINGERPRINTED}
    config["trainer"] = {k: v for k, v in (config.get("trainer") or {}).items() if k not in TRAINER_PRESENTATION}
    units = {"datasets_zoo.datamodule", "datasets_zoo.dataset", "wspace.augment"}
    for node in (config.get("task") or {}, config.get("encoder") or {}, config.get("augment") or {}):
        if isinstance(node, Mapping) and isinstance(node.get("_target_"), str):
            units.add(_code_unit(node["_target_"]))
    # config keys at the top, so that a refusal names them as on the command line (trainer.max_epochs)
    settings = {**config, "zoo fingerprint": zoo_fingerprint(dm.zoo), "code version": code_version(units)}
    if augment is not None and cfg.get("augment") is None:  # a Python hook: its name is all we can record
        settings["augment_hook"] = f"{getattr(augment, '__module__', '?')}.{getattr(augment, '__qualname__', '?')}"
    return settings


# the data-module and run keys of a task node, with what each must be
_TASK_KEY_OPTIONS = {
    "batch_size": Option("int", minimum=1), "eval_batch_size": Option("int", minimum=1, nullable=True),
    "num_workers": Option("int", minimum=0, nullable=True), "split_seed": Option("int", minimum=0),
    "split_by": Option("str"), "target": Option("str", nullable=True), "spec_id": Option("str", nullable=True),
    "patience": Option("int", minimum=0), "monitor": Option("str"), "mode": Option("choice", choices=("min", "max")),
}


def check_train_config(cfg: Any) -> None:
    """Validate a ``wspace train`` config for an encoder task before any work: the top-level
    options, ``trainer.*`` (Lightning's signature), ``task.*`` (its data / run keys and the
    task class's options) and ``encoder.*`` (the encoder class's options)."""
    from hydra.utils import get_class

    check_config("train", cfg)
    check_trainer(cfg.get("trainer"))
    task = plain(cfg.get("task"))
    if isinstance(task, Mapping):
        for k, option in _TASK_KEY_OPTIONS.items():
            if k in task:
                check_value(f"task.{k}", task[k], option)
        if isinstance(task.get("_target_"), str):
            cls = task_class(task)
            options = {k: v for k, v in task.items() if k not in DATA_KEYS + RUN_KEYS}
            check_against_signature(options, cls.__init__, "task",
                                    owner=f"task '{_task_label(task)}' ({cls.__qualname__})")
    enc = plain(cfg.get("encoder"))
    if isinstance(enc, Mapping) and isinstance(enc.get("_target_"), str):
        try:
            enc_cls = get_class(enc["_target_"])
        except Exception:  # reported by build() with the list of encoders
            return
        check_against_signature(enc, enc_cls.__init__, "encoder", owner=f"encoder {enc_cls.__qualname__}")


def run(cfg: Any, zoo: Any = None, callbacks: Sequence[Any] = (),
        augment: Callable[[ZooDataModule], tuple[Any, Any]] | None = None) -> dict[str, Any]:
    """Train, resume, test and write ``out/metrics.json``; returns the metrics dict.

    ``zoo`` (optional) is an already opened :class:`~datasets_zoo.Zoo` used instead of ``cfg.zoo``;
    ``augment`` as in :func:`build`.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from omegaconf import OmegaConf

    from wspace.fingerprint import RerunPolicy, digest, settle
    from wspace.io import atomic_write

    task, enc = _task_and_encoder(cfg)
    out = cfg.get("out")
    if out is None or str(out) in ("", "???"):
        raise WeightSpaceError("no output directory: pass out=<dir>")
    check_train_config(cfg)
    out = Path(os.path.expanduser(str(out)))
    policy = RerunPolicy.parse(cfg.get("resume", True), cfg.get("overwrite", False))
    dm, module = build(cfg, zoo, augment)
    if getattr(module, "dropped_kwargs", None):  # e.g. the invariant head's sizes, for an editing model
        print(f"wspace train: note: the equivariant version of {enc['_target_']} ignores encoder options "
              f"{module.dropped_kwargs}")
    settings = run_settings(cfg, dm, augment)
    # before anything is written: a rerun with other settings refuses (or forces, or starts over)
    status = settle(out, "train", settings, RUN_ARTIFACTS, what="the training run", policy=policy)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.yaml") as f:
        f.write(OmegaConf.to_yaml(OmegaConf.create(plain(cfg)), resolve=True))

    monitor, mode = str(task.get("monitor", "val/loss")), str(task.get("mode", "min"))
    ckpt_dir = out / "checkpoints"
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best-epoch{epoch}-step{step}", monitor=monitor, mode=mode,
                           save_top_k=1, auto_insert_metric_name=False)
    # Lightning's save_last only follows top-k saves; resuming needs the state of *every* epoch.
    last_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                enable_version_counter=False)
    stop = EarlyStopping(monitor=monitor, mode=mode, patience=int(task.get("patience", 10)))
    on_exc = SaveOnInterrupt(ckpt_dir / "last.ckpt")  # Ctrl-C / SIGTERM mid-epoch still leaves last.ckpt
    interrupt.set_resume_hint(f"checkpoint {ckpt_dir / 'last.ckpt'}")
    kw = _trainer_kwargs(cfg, task)
    kw.setdefault("enable_model_summary", False)
    # log at least once an epoch (Lightning warns otherwise); a bar on a terminal, else a line per epoch
    kw["log_every_n_steps"] = fitting_log_interval(kw.get("log_every_n_steps"), dm.train_dataloader())
    kw["enable_progress_bar"] = bool(kw.get("enable_progress_bar", True))
    bars = progress_callbacks(kw["enable_progress_bar"], name="wspace train", others=callbacks)
    kw.setdefault("plugins", [AtomicCheckpointIO()])  # a run killed while saving keeps its previous checkpoint
    trainer = L.Trainer(**kw, default_root_dir=str(out), logger=CSVLogger(str(out), name="logs"),
                        callbacks=[ckpt, last_ckpt, stop, on_exc, *bars, *callbacks])

    last = ckpt_dir / "last.ckpt"
    resume = last if (status != "fresh" and last.is_file() and not trainer.fast_dev_run) else None
    if resume is not None:
        check_checkpoint(resume)  # a corrupt or truncated file: a named error, not Lightning's traceback
        print(f"wspace train: resuming from {resume}" + (" (resume=force: trained with other settings)"
                                                        if status == "forced" else ""))
    t0 = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None, weights_only=True)
    except RuntimeError as e:
        if resume is not None and ("state_dict" in str(e) or "size mismatch" in str(e)):
            raise WeightSpaceError(f"cannot resume: the checkpoint belongs to a different model ({e}); "
                                   "use another out= or resume=false", file=str(resume)) from e
        raise
    fit_s = time.perf_counter() - t0
    best = ckpt.best_model_path if ckpt.best_model_path and Path(ckpt.best_model_path).is_file() else None
    results = trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)
    test = {k: float(v) for k, v in (results[0] if results else {}).items()}
    metrics: dict[str, Any] = dict(sorted(test.items()))
    metrics.update({
        "task": _task_label(task), "encoder": plain(enc),
        "zoo": str(dm.zoo.path), "spec_id": dm.spec_id, "split_by": dm.split_by, "split_sizes": dm.split_sizes(),
        "seed": int(cfg.get("seed", 0)), "num_parameters": module.num_parameters(),
        "monitor": monitor, "best_val": None if ckpt.best_model_score is None else float(ckpt.best_model_score),
        "best_checkpoint": best, "epochs": int(trainer.current_epoch), "global_step": int(trainer.global_step),
        "fit_time_s": round(fit_s, 3), "resumed_from": str(resume) if resume else None,
        "fingerprint": digest(settings),
    })
    if status == "forced":
        from wspace.fingerprint import read_record, record_path

        metrics["forced"] = (read_record(record_path(out, "train")) or {}).get("forced", [])
    with atomic_write(out / "metrics.json") as f:
        json.dump(metrics, f, indent=2)
    drawn = _draw_curves(out)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in test.items())
    print(f"wspace train: {_task_label(task)} / {enc['_target_']}: {shown}")
    print(f"wspace train: outputs in {out} (metrics.json, {'curves.png, ' if drawn else ''}checkpoints/, logs/)")
    return metrics


def _draw_curves(out: Path) -> bool:
    """Draw ``out/curves.png`` from the run's CSV logs (:func:`wspace.curves.plot_curves`);
    a run that logged nothing (e.g. ``trainer=debug``) gets a note instead. Returns whether drawn."""
    from wspace.curves import plot_curves

    try:
        plot_curves(out)
    except WeightSpaceError as e:
        print(f"wspace train: note: no curves.png ({e})")
        return False
    return True


def fit(task: str, encoder: str | Mapping[str, Any], zoo: Any, out: str | os.PathLike, *, seed: int = 0,
        device: str | None = None, trainer: Mapping[str, Any] | None = None,
        encoder_kwargs: Mapping[str, Any] | None = None, overrides: Sequence[str] = (), callbacks: Sequence[Any] = (),
        augment: Callable[[ZooDataModule], tuple[Any, Any]] | None = None, **task_options: Any) -> dict[str, Any]:
    """Train ``task`` (a ``configs/train/task`` option) with ``encoder`` (a
    ``configs/train/encoder`` option, or an encoder config mapping with ``_target_``) on
    ``zoo`` (path or :class:`~datasets_zoo.Zoo`); returns the metrics written to
    ``out/metrics.json``.

    ``trainer`` entries update ``cfg.trainer`` (Lightning ``Trainer`` kwargs),
    ``encoder_kwargs`` update ``cfg.encoder`` (the encoder's options), other keywords
    update ``cfg.task`` (``lr``, ``batch_size``, ``patience``, ``max_time``, ...);
    ``overrides`` are extra Hydra overrides (e.g. ``["trainer=debug"]``);
    ``augment(dm) -> (transform, collate)`` sets train-only augmentation (see :func:`build`), e.g.
    ``augment=lambda dm: (None, MixUpCollate(MixUp(align="weight_matching"), num_classes=dm.num_classes))``.
    """
    from omegaconf import OmegaConf, open_dict

    chosen = [f"encoder={encoder}"] if isinstance(encoder, str) else []
    cfg = compose_config("train", [f"task={task}", *chosen, f"seed={int(seed)}", *overrides])
    with open_dict(cfg):
        cfg.zoo = str(zoo.path) if isinstance(zoo, Zoo) else str(zoo)
        cfg.out = str(out)
        if not isinstance(encoder, str):
            cfg.encoder = OmegaConf.create(resolve_encoder(encoder))
        if device is not None:
            cfg.device = str(device)
        if trainer:
            cfg.trainer = OmegaConf.merge(cfg.trainer, plain(trainer))
        if encoder_kwargs:
            cfg.encoder = OmegaConf.merge(cfg.encoder, plain(encoder_kwargs))
        if task_options:
            cfg.task = OmegaConf.merge(cfg.task, plain(task_options))
    return run(cfg, zoo=zoo if isinstance(zoo, Zoo) else None, callbacks=callbacks, augment=augment)
