"""Task objects: :class:`Task` (classification) and :class:`INRTask` (images as INR targets)."""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Task", "INRTask", "fingerprint_tensors", "restrict_to_classes"]


def fingerprint_tensors(*tensors: torch.Tensor) -> str:
    """A short hash of the shapes and bytes of ``tensors``."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Task:
    """A supervised classification task with a fixed train/test split.

    Attributes:
        name: canonical stable name (e.g. ``"digits:0-3-5@image"``).
        kind: ``"classification"``.
        x_train, x_test: float32 inputs ``[N, *input_shape]``.
        y_train, y_test: int64 labels in ``0..num_classes-1``.
        classes: the original class label of each remapped label.
        input_shape: shape of one input (``(64,)``, ``(1, 8, 8)``, ``(40,)``, ``(1, 40)``).
        index_train, index_test: positions of the samples in the source dataset.
    """

    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[int, ...]
    input_shape: tuple[int, ...]
    index_train: torch.Tensor
    index_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_features(self) -> int:
        """Input features (flat views) or input channels (image / signal views)."""
        return self.input_shape[0]

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of the task's tensors: detects a changed dataset behind a stored zoo."""
        return fingerprint_tensors(self.x_train, self.y_train, self.x_test, self.y_test)

    def meta(self) -> dict[str, Any]:
        """JSON-serializable summary (for zoo manifests)."""
        return {
            "name": self.name, "kind": self.kind, "classes": list(self.classes), "input_shape": list(self.input_shape),
            "n_train": len(self.y_train), "n_test": len(self.y_test), "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True, eq=False)
class INRTask:
    """Images as implicit-neural-representation targets (one SIREN per image).

    Attributes:
        name: canonical stable name (e.g. ``"digits-inr@16"``).
        kind: ``"inr"``.
        resolution: side of the rendered target grid.
        coords: ``[P, 2]`` pixel-centre coordinates in [-1, 1]^2, P = resolution**2,
            row-major; column 0 is the row (y, top = -1), column 1 the column (x, left
            = -1): the ``get_mgrid`` convention of SIREN / DWSNets INR zoos.
        targets_train, targets_test: ``[n_images, P, 1]`` grayscale in [-1, 1]
            (``2 * pixel / 16 - 1``: background -1, ink +1).
        labels_train, labels_test: class of each image (remapped to ``0..k-1``).
        images_train, images_test: the source 8x8 images ``[n, 8, 8]`` in [0, 1]
            (background 0), e.g. for :func:`affine_variants`.
        classes: original digit of each remapped label.
        index_train, index_test: positions in scikit-learn's digits.
    """

    name: str
    kind: str
    resolution: int
    coords: torch.Tensor
    targets_train: torch.Tensor
    targets_test: torch.Tensor
    labels_train: torch.Tensor
    labels_test: torch.Tensor
    images_train: torch.Tensor
    images_test: torch.Tensor
    classes: tuple[int, ...]
    index_train: torch.Tensor
    index_test: torch.Tensor
    value_range: tuple[float, float] = (-1.0, 1.0)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint_tensors(self.coords, self.targets_train, self.targets_test, self.labels_train, self.labels_test)

    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "resolution": self.resolution, "classes": list(self.classes),
            "n_train": len(self.labels_train), "n_test": len(self.labels_test), "value_range": list(self.value_range),
            "fingerprint": self.fingerprint,
        }


def restrict_to_classes(y: np.ndarray, idx: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """The sample indices ``idx`` whose label ``y`` is one of ``classes``."""
    return idx[np.isin(y[idx], classes)]
