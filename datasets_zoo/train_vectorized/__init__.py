"""Train many networks of one spec in the same step.

A population of ``M`` networks of one spec is trained as one ``[M, D]`` parameter matrix
(viewed per parameter as the stacked tensors ``[M, *shape]`` of a
:class:`~wspace.WeightSpace`). Every training step

* gathers one mini-batch per network (each network its own data order, from its own
  seed) into ``x[M, batch, ...]``,
* runs all networks with the library's batched forward (plus per-network dropout),
* sums the per-network mean losses and calls autograd ONCE (network ``m``'s loss only
  depends on network ``m``'s parameters, so each gets exactly its own gradient),
* updates all networks with :class:`VectorizedOptimizer`, whose hyperparameters are
  ``[M]`` tensors (per-network learning rate, weight decay, momentum, optimizer kind).

Randomness is *per network* and does not depend on which other networks share the
chunk: data order comes from a counter-based hash of ``(seed, epoch, sample)``, dropout
masks from a per-step random bank read at a per-network offset (hash of ``(seed,
step)``). Training network ``m`` alone therefore gives the same weights (to float
rounding) as training it inside any chunk; ``tests/test_build.py`` checks this.

Modules: :mod:`.randomness` (counter-based per-network randomness, dropout masks),
:mod:`.forward` (the training forward), :mod:`.optimizer` (the vectorized optimizer),
:mod:`.population` (the ``[M, D]`` parameter matrix), :mod:`.classifiers` and
:mod:`.inrs` (the two training loops). Their public names are re-exported here.
"""
from __future__ import annotations

from .classifiers import ClassifierData, classifier_metrics, evaluate_classifiers, train_classifiers
from .forward import train_forward
from .inrs import fit_inrs, psnr
from .optimizer import OPTIMIZERS, VectorizedOptimizer
from .population import finite_rows, param_views
from .randomness import DropoutSampler, counter_bits, counter_uniform, epoch_order, hash32

__all__ = [
    "OPTIMIZERS",
    "hash32",
    "counter_bits",
    "counter_uniform",
    "epoch_order",
    "DropoutSampler",
    "train_forward",
    "VectorizedOptimizer",
    "ClassifierData",
    "evaluate_classifiers",
    "classifier_metrics",
    "train_classifiers",
    "psnr",
    "fit_inrs",
    "param_views",
    "finite_rows",
]
