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

Several architectures (``architectures:``, e.g. ``digits-tasks-multi``; see
:mod:`.architectures`): every task and seed is trained once per named architecture; records
add ``architecture`` (the name), the task is in the architecture's view (``@image``), and
``split`` may be ``heldout_pair`` (a training task held out for that one architecture).
``meta["architectures"]`` describes them, ``meta["splits"]["heldout_pairs"]`` lists the pairs.

CLI config (``configs/zoo_build/zoo_build.yaml``): ``zoo`` (the preset group), ``out``, ``size``
(``small``/``full``, default ``full``), ``seed``, ``device``, optional ``chunk_size`` and
``progress``; preset values are overridden as ``zoo.<key>=...``.

Modules: :mod:`.presets` (load and validate), :mod:`.architectures` (presets with several
architectures), :mod:`.planning` (runs), :mod:`.networks`
(architecture and init per run), :mod:`.chunks`, :mod:`.classifier_chunks`,
:mod:`.inr_chunks` (training), :mod:`.runner` (:func:`build_zoo`), :mod:`.progress`.
"""
from __future__ import annotations

from .networks import init_runs
from .planning import Run, plan_runs
from .presets import SIZES, load_preset, preset_names
from .runner import BUILDER_VERSION, build_zoo

__all__ = ["Run", "preset_names", "load_preset", "plan_runs", "build_zoo", "init_runs", "BUILDER_VERSION", "SIZES"]
