"""Bundled, offline task data that zoos are trained on.

Every task is named by a stable string, parsed by :func:`get_task`::

    <base>[:<classes>][@<view>]

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, no download), pixels
  scaled to [0, 1] (divided by 16). Fixed stratified split: 1,437 train / 360 test
  (per class, ``round(n_c * 360 / 1797)`` test images by largest remainder, chosen by a
  ``numpy.random.RandomState(0)`` permutation of that class; indices kept in ascending
  order). Views: ``digits`` = flat ``[64]`` inputs (MLPs), ``digits@image`` =
  ``[1, 8, 8]`` images (CNNs).
* ``digits:<c1>-<c2>-...``: a class subset (2..10 distinct digits, e.g.
  ``digits:0-3-5-7-9``), restricted from the SAME split; labels remapped in sorted
  class order (smallest digit -> 0). The canonical name lists the digits sorted, and
  the full set is just ``digits``. :func:`subset_tasks` enumerates every k-way name.
* ``mnist1d``: MNIST-1D (Greydanus 2020), generated procedurally here (no download):
  4,000 train / 1,000 test, seed 42, the published recipe and defaults. Views:
  ``mnist1d`` = flat ``[40]``, ``mnist1d@signal`` = ``[1, 40]`` 1-D signals.
* ``digits-inr[:<classes>][@<resolution>]``: each digit image as a regression target
  over pixel coordinates (an :class:`INRTask`), the same split by image as ``digits``.
  ``@16`` renders bilinearly upsampled 16x16 targets (8..64 allowed; default 8).

Tasks are deterministic (identical tensors every call and every process), float32,
and cached: the returned tensors are shared, so do not modify them in place.

Modules: :mod:`.types` (:class:`Task`, :class:`INRTask`), :mod:`.names` (the grammar),
:mod:`.lookup` (:func:`get_task`), :mod:`.digits`, :mod:`.mnist1d`, :mod:`.inr` (INR
targets and affine variants). Their public names are re-exported here.
"""
from __future__ import annotations

from wspace.coordinates import coordinate_grid

from .digits import DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE
from .inr import affine_variants, images_to_targets, targets_to_images
from .lookup import get_task
from .mnist1d import mnist1d_arrays
from .names import INR_RESOLUTIONS, subset_tasks, task_forms
from .types import INRTask, Task

__all__ = [
    "Task",
    "INRTask",
    "get_task",
    "subset_tasks",
    "task_forms",
    "coordinate_grid",
    "images_to_targets",
    "targets_to_images",
    "affine_variants",
    "mnist1d_arrays",
    "DIGITS_TEST_SIZE",
    "DIGITS_SPLIT_SEED",
    "INR_RESOLUTIONS",
]
