"""Weight-space tasks as Lightning modules.

The data comes from :class:`datasets_zoo.ZooDataModule` (a task is built from any object
with its ``spec`` / ``num_classes`` / ``stats`` / ``target_stats()``); ``wspace train``
(:mod:`wspace.commands.train`) composes the two.

* :class:`InrClassification`: class of the image an INR encodes (cross-entropy; accuracy).
* :class:`GeneralizationPrediction`: a classifier's test accuracy from its weights
  (standardized MSE; Kendall tau and R^2 over the whole split).
* :class:`InrEditing`: equivariant weights -> weights of the dilated image (render MSE,
  with the unedited identity baseline).

Every task wraps a ``wspace.nn`` encoder built as ``ENCODERS[name](spec, out_features=k, **kwargs)``
(``EQUIVARIANT_ENCODERS`` for editing).
"""
from .generalization import GeneralizationPrediction
from .inr_classification import InrClassification
from .inr_editing import InrEditing, dilate, inr_resolution
from .metrics import kendall_tau, r2_score

__all__ = [
    "InrClassification", "GeneralizationPrediction", "InrEditing", "dilate", "inr_resolution",
    "kendall_tau", "r2_score",
]
