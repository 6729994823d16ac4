"""Fitting one training stage of a generator with Lightning: a fixed number of steps over
endless random mini-batches of in-memory tensors, exactly resumable checkpoints, CSV logs,
and the fingerprints that keep a rerun from reusing a stage trained with other settings.

``fit_stage`` writes ``out/checkpoints/<stage>/last.ckpt`` (every ``every`` steps, at the
end, and when interrupted by Ctrl-C or SIGTERM, see :class:`wspace.checkpoints.SaveOnInterrupt`;
a rerun resumes from it) and ``out/logs/<stage>/version_<k>/metrics.csv`` (``version_0`` for
the first run, one more per resumed run: Lightning's CSV logger would overwrite a reused
version). The device comes from ``wspace.devices.trainer_device`` when the Trainer arguments
leave the accelerator on ``auto``, as ``wspace train`` does for encoders.

Exact resume: a checkpoint holds, besides what Lightning saves (weights, optimizer,
scheduler, step counters, anything the module adds such as an EMA), the state of every
random stream the next steps draw from (:class:`ExactResume`): Python's, NumPy's and
torch's global generators, every ``torch.Generator`` attribute of the LightningModule and
its submodules, and the position in the :class:`RandomBatches` stream. Periodic checkpoints
are taken at a step boundary (before the next step starts, after every hook of the previous
one ran), so a run killed at any point and rerun ends with the same weights, bit for bit, as
one that never stopped (on the CPU, with deterministic algorithms). Each stage starts from
its own seed, so a stage does not depend on whether the stages before it ran in the same
process or were reused from disk.

Fingerprints: :func:`settle_stages` compares each stage's settings (its config keys, the
zoo's fingerprint, the seed, the Trainer settings that change results, the code version)
with the record kept next to its results (:mod:`wspace.fingerprint`) before any work starts,
and refuses a rerun with other settings unless ``resume=force`` or ``overwrite=true`` says
otherwise (:func:`wspace.fingerprint.rerun_policy`).
"""
from __future__ import annotations

import functools
import random
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from wspace.checkpoints import AtomicCheckpointIO, SaveOnInterrupt, check_checkpoint
from wspace.devices import trainer_device
from wspace.errors import WeightSpaceError
from wspace.fingerprint import TRAINER_PRESENTATION, code_version, settle
from wspace.progress import progress_callbacks
from wspace.schedules import warmup_cosine_factor

__all__ = ["RandomBatches", "random_batches", "cosine_schedule", "stage_trainer_kwargs", "fit_stage", "stage_seed",
           "seed_stage", "rng_state", "set_rng_state", "ExactResume", "StepCheckpoint", "Stage", "settle_stages",
           "trainer_fingerprint", "STAGE_OWNED"]

# Trainer arguments a stage sets itself (fixed steps, its own logger and checkpoints): setting one is an error
STAGE_OWNED = ("max_epochs", "max_steps", "max_time", "logger", "callbacks", "default_root_dir",
               "enable_checkpointing")


class RandomBatches(torch.utils.data.IterableDataset):
    """Endless random mini-batches of in-memory tensors (no per-item collation): a fresh
    permutation (drawn from a generator seeded with ``seed``) per pass, cut into full batches.

    The stream is a function of the seed alone, so a resumed run continues it exactly:
    :meth:`resume_at` makes the next iterator skip the batches already trained on.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int):
        if not tensors or len(tensors[0]) == 0:
            raise WeightSpaceError("no training data: the stage's tensors are empty")
        if int(batch_size) < 1:
            raise WeightSpaceError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.tensors, self.batch_size, self.seed = tensors, int(batch_size), int(seed)
        self.start = 0

    def resume_at(self, batches: int) -> None:
        """Make the next iterator start after ``batches`` batches of the stream."""
        self.start = int(batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        g = torch.Generator().manual_seed(self.seed)
        n = len(self.tensors[0])
        b = min(self.batch_size, n)
        per_pass = n // b
        skip = self.start
        while True:
            perm = torch.randperm(n, generator=g)
            if skip >= per_pass:  # replaying batches already trained on: only the permutation is drawn
                skip -= per_pass
                continue
            for a in range(skip * b, per_pass * b, b):
                i = perm[a:a + b]
                yield tuple(t[i] for t in self.tensors)
            skip = 0


def random_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    """A DataLoader over :class:`RandomBatches` (batches are made by the dataset)."""
    return torch.utils.data.DataLoader(RandomBatches(tensors, batch_size, seed), batch_size=None)


def cosine_schedule(opt: torch.optim.Optimizer, total: int, warmup: int) -> dict[str, Any]:
    """Lightning's per-step ``lr_scheduler`` entry: linear warmup, cosine decay to 5%."""
    f = functools.partial(warmup_cosine_factor, total=total, warmup=warmup, floor=0.05)
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, f), "interval": "step"}


def _without_owned(trainer: Mapping[str, Any] | None) -> dict[str, Any]:
    kw = dict(trainer or {})
    owned = sorted(k for k in kw if k in STAGE_OWNED and kw[k] is not None)
    if owned:
        raise WeightSpaceError(f"trainer.{owned[0]} is not used by generator training (each stage runs "
                               f"generator.<stage>.steps steps with its own logger and checkpoints); remove "
                               f"{', '.join('trainer.' + k for k in owned)}")
    return {k: v for k, v in kw.items() if k not in STAGE_OWNED}


def stage_trainer_kwargs(trainer: Mapping[str, Any] | None, device: str = "cpu") -> dict[str, Any]:
    """User Trainer arguments with ``device`` deciding the accelerator when they say ``auto``.

    Raises:
        WeightSpaceError: an argument the stages set themselves (:data:`STAGE_OWNED`, e.g.
            ``max_epochs``: a stage runs ``<stage>.steps`` steps), so that it is never
            silently dropped.
    """
    kw = _without_owned(trainer)
    if kw.get("accelerator", "auto") == "auto":
        kw.update(trainer_device(device))
    return kw


def trainer_fingerprint(trainer: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Trainer arguments that can change a stage's result (precision, gradient clipping,
    accumulation, determinism, ...): all but where it runs and how it reports
    (:data:`wspace.fingerprint.TRAINER_PRESENTATION`)."""
    return {k: v for k, v in dict(trainer or {}).items() if k not in TRAINER_PRESENTATION and k not in STAGE_OWNED}


# --------------------------------------------------------------------------- random state
def stage_seed(seed: int, stage: str) -> int:
    """The seed stage ``stage`` starts from: a fixed function of the run's seed and the stage name."""
    return (int(seed) * 1_000_003 + zlib.crc32(stage.encode())) % (2**63 - 1)


def seed_stage(seed: int, stage: str) -> None:
    """Seed Python's, NumPy's and torch's global generators for stage ``stage``, so that what it
    draws does not depend on what ran before it in this process."""
    s = stage_seed(seed, stage)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def _generators(module: Any) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` attribute of ``module`` and its submodules, by dotted name."""
    found: dict[str, torch.Generator] = {}
    named = module.named_modules() if isinstance(module, torch.nn.Module) else [("", module)]
    for prefix, m in named:
        for k, v in vars(m).items():
            if isinstance(v, torch.Generator):
                found[f"{prefix}.{k}" if prefix else k] = v
    return found


def rng_state(module: Any = None) -> dict[str, Any]:
    """The state of every random stream a training step may draw from: Python, NumPy, torch
    (CPU and CUDA) and the ``torch.Generator`` attributes of ``module``; tensors and plain
    values only, so a checkpoint holding it loads with ``torch.load(weights_only=True)``."""
    version, inner, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(inner, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "generators": {k: g.get_state() for k, g in _generators(module).items()} if module is not None else {},
    }
    return state


def set_rng_state(state: Mapping[str, Any], module: Any = None) -> None:
    """Restore what :func:`rng_state` captured (generators of ``module`` matched by name)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), int(npy["pos"]), int(npy["has_gauss"]),
                         float(npy["cached"])))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if module is not None:
        gens = _generators(module)
        for k, s in (state.get("generators") or {}).items():
            if k in gens:
                gens[k].set_state(s)


class ExactResume(Callback):
    """Saves, in every checkpoint, the random state the next step draws from and the position
    in the data stream; restores them when Lightning resumes from one (see the module docstring).

    The random state is re-applied at the start of the first step after resuming (after
    Lightning created the data iterator, which itself draws a seed), the data position before
    the iterator exists (``stream``: the :class:`RandomBatches` being trained on, if any).
    """

    def __init__(self, stream: RandomBatches | None = None):
        self.stream = stream
        self.module: Any = None
        self.batches = 0  # batches fully trained on so far
        self.pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "ExactResume"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.module = pl_module

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.batches = int(batch_idx)
        if self.pending is not None:
            set_rng_state(self.pending, pl_module)
            self.pending = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.batches = int(batch_idx) + 1

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "rng": rng_state(self.module)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches = int(state_dict.get("batches", 0))
        self.pending = state_dict.get("rng")
        if self.stream is not None:
            self.stream.resume_at(self.batches)


class StepCheckpoint(Callback):
    """Write ``path`` (atomically, through the Trainer's checkpoint IO) every ``every`` steps,
    at a step boundary, and once more when training ends."""

    def __init__(self, path: str | Path, every: int):
        self.path = Path(path)
        self.every = max(1, int(every))
        self.first: int | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.first = int(trainer.global_step)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        step = int(trainer.global_step)
        if step % self.every == 0 and step != self.first:
            trainer.save_checkpoint(str(self.path), weights_only=False)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        trainer.save_checkpoint(str(self.path), weights_only=False)


# --------------------------------------------------------------------------- fitting
def fit_stage(module: Any, stage: str, out: Path, steps: int, loader: Any, trainer_kwargs: Mapping[str, Any],
              every: int, progress: bool, seed: int | None = None) -> None:
    """Train ``module`` for ``steps`` steps on ``loader`` (see the module docstring).

    ``seed``: the run's seed (default: the :class:`RandomBatches` seed of ``loader``); the
    stage starts from :func:`stage_seed` of it, or resumes from ``out/checkpoints/<stage>/last.ckpt``.
    """
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    kw = _without_owned(trainer_kwargs)
    kw.setdefault("accelerator", "cpu")
    kw.setdefault("devices", 1)
    kw["enable_progress_bar"] = bool(kw.get("enable_progress_bar", True) and progress)
    kw["log_every_n_steps"] = max(1, min(int(kw.get("log_every_n_steps") or 10), steps))
    ckdir = out / "checkpoints" / stage
    last = ckdir / "last.ckpt"
    stream = getattr(loader, "dataset", None)
    stream = stream if isinstance(stream, RandomBatches) else None
    if seed is None:
        seed = stream.seed if stream is not None else 0
    resume = last.is_file()
    if resume:
        check_checkpoint(last)  # a named error for a corrupt or truncated file, before Lightning reads it
    else:
        seed_stage(seed, stage)
    exact = ExactResume(stream)
    saver = StepCheckpoint(last, every)
    on_exc = SaveOnInterrupt(last)  # Ctrl-C / SIGTERM mid-stage still leaves a resumable last.ckpt
    kw.setdefault("plugins", [AtomicCheckpointIO()])  # a run killed while saving keeps its previous checkpoint
    # a live bar on a terminal, a line every few seconds elsewhere (wspace.progress)
    bars = progress_callbacks(kw["enable_progress_bar"], name=stage)
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=CSVLogger(str(out / "logs"), name=stage),
                        callbacks=[exact, saver, on_exc, *bars], enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=str(out), num_sanity_val_steps=0, **kw)
    with warnings.catch_warnings():
        # the data stream and random state are restored by ExactResume: Lightning's notice does not apply
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", message=".*not resumable.*")
        # resuming reads our own Lightning checkpoint (written by this function) from `out`, never unpickling
        trainer.fit(module, loader, ckpt_path=str(last) if resume else None, weights_only=True)


# --------------------------------------------------------------------------- fingerprints
@dataclass(frozen=True)
class Stage:
    """A training stage of a generator for :func:`settle_stages`.

    ``name``: the stage (its record is ``out/fingerprints/<name>.json``); ``keys``: the
    top-level config keys its result depends on (``None``: every key no earlier stage
    claimed and not ignored); ``artifacts``: what it leaves under ``out`` (finished weights,
    checkpoints, logs), checked for and, with ``overwrite=true``, deleted.
    """

    name: str
    keys: tuple[str, ...] | None
    artifacts: tuple[str, ...]


def settle_stages(out: str | Path, zoo: Any, cfg: Mapping[str, Any], stages: Sequence[Stage], *, generator: str,
                  seed: int, trainer: Mapping[str, Any] | None = None, code: Sequence[str] = (),
                  ignore: Sequence[str] = ("sampling", "checkpoint_every")) -> dict[str, str]:
    """Check every stage's fingerprint before any work starts (:func:`wspace.fingerprint.settle`).

    A stage's fingerprint holds the generator class, the zoo's fingerprint, the seed, its
    config keys, the Trainer settings that change results (:func:`trainer_fingerprint`),
    the code version of the modules ``code`` and the fingerprint of the stage before it (a
    changed VAE invalidates the diffusion trained on its latents). ``ignore``: keys that do
    not change any trained weights (sampling defaults, checkpoint frequency).

    Returns each stage's outcome (``fresh``, ``resume`` or ``forced``).

    Raises:
        WeightSpaceError: a stage holds results computed with other settings (see
            :func:`wspace.fingerprint.settle` for the ways on).
    """
    from datasets_zoo import Zoo
    from datasets_zoo.source import zoo_fingerprint
    from wspace.fingerprint import digest

    out = Path(out)
    opened = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    common = {"class": generator, "zoo fingerprint": zoo_fingerprint(opened), "seed": int(seed),
              "trainer": trainer_fingerprint(trainer), "code version": code_version(code)}
    claimed = set(ignore)
    previous: str | None = None
    outcome: dict[str, str] = {}
    for st in stages:
        keys = st.keys if st.keys is not None else tuple(k for k in cfg if k not in claimed)
        claimed.update(keys)
        # the config under "generator", so that a refusal names keys as the command line does
        settings = {**common, "stage": st.name, "generator": {k: cfg.get(k) for k in keys}, "after stage": previous}
        outcome[st.name] = settle(out, st.name, settings, st.artifacts, what=f"the {st.name} stage")
        previous = digest(settings)
    return outcome
