"""Weight-space tasks as Lightning modules, their data module, and ``wspace train``.

* :class:`ZooDataModule`: leak-free train / val / test splits of a zoo (normalized, batched reads).
* :class:`InrClassification`: class of the image an INR encodes (cross-entropy; accuracy).
* :class:`GeneralizationPrediction`: a classifier's test accuracy from its weights
  (standardized MSE; Kendall tau and R^2 over the whole split).
* :class:`InrEditing`: equivariant weights -> weights of the dilated image (render MSE,
  with the unedited identity baseline).
* :func:`fit` / :func:`~wspace.tasks.train.main`: the ``wspace train`` run (checkpoints,
  resume, early stopping, CSV logs, ``metrics.json``).

Every task wraps a ``wspace.nn`` encoder built as ``ENCODERS[name](spec, out_features=k, **kwargs)``
(``EQUIVARIANT_ENCODERS`` for editing).
"""
from .datamodule import ZooDataModule, open_zoo, resolve_split_by
from .generalization import GeneralizationPrediction
from .inr_classification import InrClassification
from .inr_editing import InrEditing, dilate, inr_resolution
from .metrics import kendall_tau, r2_score
from .train import TASKS, fit, run

__all__ = [
    "ZooDataModule", "open_zoo", "resolve_split_by",
    "InrClassification", "GeneralizationPrediction", "InrEditing", "dilate", "inr_resolution",
    "kendall_tau", "r2_score", "TASKS", "fit", "run",
]
