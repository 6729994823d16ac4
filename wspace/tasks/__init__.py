"""Weight-space tasks as Lightning modules.

The data comes from :class:`datasets_zoo.ZooDataModule` (a task is built from any object
with its ``spec`` / ``num_classes`` / ``stats`` / ``target_stats()``); ``wspace train``
(:mod:`wspace.commands.train`) composes the two.

* :class:`InrClassification`: class of the image an INR encodes (cross-entropy; accuracy).
* :class:`GeneralizationPrediction`: a classifier's test accuracy from its weights
  (standardized MSE; Kendall tau and R^2 over the whole split).
* :class:`InrEditing`: equivariant weights -> weights of the dilated image (render MSE,
  with the unedited identity baseline).

Every task wraps a ``wspace.nn`` encoder given as a config (``{"_target_": "wspace.nn.UNF", ...}``
or a ``configs/train/encoder`` option name) and built with :func:`wspace.nn.build_encoder`
(:func:`wspace.nn.build_equivariant` for editing); ``configs/train/task/<name>.yaml``
names the task class with ``_target_``.
"""
from .base import WeightSpaceTask, resolve_encoder
from .generalization import GeneralizationPrediction
from .inr_classification import InrClassification
from .inr_editing import InrEditing, dilate, inr_resolution
from .metrics import kendall_tau, r2_score

__all__ = [
    "WeightSpaceTask", "resolve_encoder", "InrClassification", "GeneralizationPrediction", "InrEditing", "dilate", "inr_resolution",
    "kendall_tau", "r2_score",
]
