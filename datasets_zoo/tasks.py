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
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wspace.coordinates import coordinate_grid
from wspace.errors import WeightSpaceError

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
]

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
INR_RESOLUTIONS = range(8, 65)

_NAME_RE = re.compile(r"^(?P<base>digits-inr|digits|mnist1d)(?::(?P<classes>[0-9](?:-[0-9])*))?(?:@(?P<view>[a-z0-9]+))?$")
_VIEWS = {"digits": ("flat", "image"), "mnist1d": ("flat", "signal")}


def task_forms() -> str:
    """The valid task-name forms, for error messages and docs."""
    return (
        "'digits' (flat [64]), 'digits@image' ([1, 8, 8]), 'digits:<d1>-<d2>-...' (2..10 distinct digits 0-9, "
        "e.g. 'digits:0-3-5-7-9', optionally with '@image'), 'mnist1d' (flat [40]), 'mnist1d@signal' ([1, 40]), "
        "'mnist1d:<d1>-<d2>-...', 'digits-inr[:<d1>-<d2>-...][@<resolution 8..64>]'"
    )


# --------------------------------------------------------------------------- task objects
def _fingerprint(*tensors: torch.Tensor) -> str:
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
        return _fingerprint(self.x_train, self.y_train, self.x_test, self.y_test)

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
        return _fingerprint(self.coords, self.targets_train, self.targets_test, self.labels_train, self.labels_test)

    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "resolution": self.resolution, "classes": list(self.classes),
            "n_train": len(self.labels_train), "n_test": len(self.labels_test), "value_range": list(self.value_range),
            "fingerprint": self.fingerprint,
        }


# --------------------------------------------------------------------------- name parsing
def _parse(name: str) -> tuple[str, tuple[int, ...], str]:
    """-> (base, sorted classes, view), validated; raises WeightSpaceError."""
    if not isinstance(name, str):
        raise WeightSpaceError(f"task name must be a string, got {type(name).__name__}; valid forms: {task_forms()}")
    m = _NAME_RE.match(name.strip())
    if m is None:
        raise WeightSpaceError(f"unknown task '{name}'; valid forms: {task_forms()}")
    base = m["base"]
    classes: tuple[int, ...] = tuple(range(10))
    if m["classes"] is not None:
        digits = [int(c) for c in m["classes"].split("-")]
        if len(set(digits)) != len(digits) or len(digits) < 2:
            raise WeightSpaceError(
                f"task '{name}': a class subset needs 2..10 distinct digits, got {m['classes']!r}; valid forms: {task_forms()}"
            )
        classes = tuple(sorted(digits))
    view = m["view"]
    if base == "digits-inr":
        view = view or "8"
        if not view.isdigit() or int(view) not in INR_RESOLUTIONS:
            raise WeightSpaceError(f"task '{name}': INR resolution must be an integer in 8..64; valid forms: {task_forms()}")
        view = str(int(view))
    else:
        view = view or "flat"
        if view not in _VIEWS[base]:
            raise WeightSpaceError(f"task '{name}': view '@{view}' is not one of {_VIEWS[base]}; valid forms: {task_forms()}")
    return base, classes, view


def _canonical(base: str, classes: tuple[int, ...], view: str) -> str:
    name = base
    if classes != tuple(range(10)):
        name += ":" + "-".join(map(str, classes))
    if view not in ("flat", "8"):
        name += "@" + view
    return name


def subset_tasks(k: int, base: str = "digits") -> list[str]:
    """Every k-way class-subset task name (``C(10, k)`` names, lexicographic), e.g.
    ``subset_tasks(2)[0] == "digits:0-1"``; ``base`` may carry a view (``"digits@image"``)."""
    if not 2 <= k <= 10:
        raise WeightSpaceError(f"subset size k must be in 2..10, got {k}")
    b, classes, view = _parse(base)
    if classes != tuple(range(10)):
        raise WeightSpaceError(f"subset_tasks base must be a full task such as 'digits', got '{base}'")
    return [_canonical(b, c, view) for c in itertools.combinations(range(10), k)]


def get_task(name: str) -> Task | INRTask:
    """The task called ``name`` (see the module docstring for the grammar).

    Non-canonical spellings (unsorted digits, ``@flat``, ``@8``) resolve to the same
    cached object, whose ``name`` is canonical.

    Raises:
        WeightSpaceError: unknown name, listing the valid forms.
    """
    return _get_task(_canonical(*_parse(name)))


@functools.lru_cache(maxsize=None)
def _get_task(canonical: str) -> Task | INRTask:
    base, classes, view = _parse(canonical)
    if base == "digits-inr":
        return _digits_inr(canonical, classes, int(view))
    if base == "digits":
        x, y, train_idx, test_idx = _digits_source()
        sample_shape = (64,) if view == "flat" else (1, 8, 8)
    else:
        x, y, train_idx, test_idx = _mnist1d_source()
        sample_shape = (40,) if view == "flat" else (1, 40)
    tr, te = _restrict(y, train_idx, classes), _restrict(y, test_idx, classes)
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))
    return Task(
        name=canonical,
        kind="classification",
        x_train=torch.from_numpy(x[tr].reshape(len(tr), *sample_shape)),
        y_train=torch.from_numpy(remap[y[tr]]),
        x_test=torch.from_numpy(x[te].reshape(len(te), *sample_shape)),
        y_test=torch.from_numpy(remap[y[te]]),
        classes=classes,
        input_shape=sample_shape,
        index_train=torch.from_numpy(tr),
        index_test=torch.from_numpy(te),
    )


def _restrict(y: np.ndarray, idx: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    return idx[np.isin(y[idx], classes)]


# --------------------------------------------------------------------------- digits
def _stratified_split(y: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, ``test_size * n_c / N`` test samples (largest remainder so that the total
    is exact), chosen by a legacy ``RandomState`` permutation (its stream is frozen
    across numpy versions, unlike ``default_rng``)."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * test_size / len(y)
    n_test = np.floor(quota).astype(int)
    short = test_size - n_test.sum()
    order = np.lexsort((classes, -(quota - n_test)))  # largest remainder, ties -> smaller class
    n_test[order[:short]] += 1
    rs = np.random.RandomState(seed)
    test = []
    for c, k in zip(classes, n_test):  # 10 classes: a loop over classes, not samples
        members = np.flatnonzero(y == c)
        test.append(members[rs.permutation(len(members))[:k]])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


@functools.lru_cache(maxsize=None)
def _digits_source() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x [1797, 64] float32 in [0, 1], y int64, train indices, test indices)."""
    from sklearn.datasets import load_digits  # bundled csv in the wheel: no network

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    train_idx, test_idx = _stratified_split(y, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    return x, y, train_idx, test_idx


# --------------------------------------------------------------------------- INR targets
def images_to_targets(images: torch.Tensor) -> torch.Tensor:
    """``[..., H, W]`` images in [0, 1] -> ``[..., H*W, 1]`` INR targets in [-1, 1]."""
    return (2.0 * images - 1.0).flatten(-2).unsqueeze(-1)


def targets_to_images(targets: torch.Tensor, resolution: int) -> torch.Tensor:
    """Inverse of :func:`images_to_targets`: ``[..., P, 1]`` in [-1, 1] -> ``[..., R, R]`` in [0, 1]."""
    return ((targets.squeeze(-1) + 1.0) / 2.0).reshape(*targets.shape[:-2], resolution, resolution)


def _digits_inr(canonical: str, classes: tuple[int, ...], resolution: int) -> INRTask:
    x, y, train_idx, test_idx = _digits_source()
    tr, te = _restrict(y, train_idx, classes), _restrict(y, test_idx, classes)
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))
    img_tr = torch.from_numpy(x[tr].reshape(-1, 8, 8))
    img_te = torch.from_numpy(x[te].reshape(-1, 8, 8))
    if resolution == 8:
        rend_tr, rend_te = img_tr, img_te
    else:  # variant 0 of affine_variants is the identity warp, i.e. bilinear upsampling
        rend_tr = affine_variants(img_tr, 1, resolution=resolution)[:, 0]
        rend_te = affine_variants(img_te, 1, resolution=resolution)[:, 0]
    return INRTask(
        name=canonical,
        kind="inr",
        resolution=resolution,
        coords=coordinate_grid(resolution),
        targets_train=images_to_targets(rend_tr),
        targets_test=images_to_targets(rend_te),
        labels_train=torch.from_numpy(remap[y[tr]]),
        labels_test=torch.from_numpy(remap[y[te]]),
        images_train=img_tr,
        images_test=img_te,
        classes=classes,
        index_train=torch.from_numpy(tr),
        index_test=torch.from_numpy(te),
    )


def affine_variants(
    images: torch.Tensor,
    n_variants: int,
    generator: torch.Generator | None = None,
    *,
    resolution: int | None = None,
    max_rotation: float = 15.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    max_translation: float = 1.0,
    background: float = 0.0,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random affine variants of each square image, rendered in one batched warp.

    Each variant rotates the image about its centre by ``U(-max_rotation,
    max_rotation)`` degrees (positive = clockwise as displayed, rows pointing down),
    scales it by ``U(*scale_range)`` and shifts it by
    ``U(-max_translation, max_translation)`` source pixels per axis, then samples
    it bilinearly (``affine_grid`` + ``grid_sample``, ``align_corners=True``: pixel
    centres sit on ``linspace(-1, 1, side)`` as in :func:`coordinate_grid`) on a
    ``resolution x resolution`` grid (default: the source side). Outside the image
    is ``background``. Variant 0 is the identity warp: exactly the original when
    ``resolution`` equals the source side, its bilinear upsampling otherwise.

    Args:
        images: ``[n, H, W]`` or ``[n, 1, H, W]`` with ``H == W``.
        n_variants: variants per image (>= 1, variant 0 included).
        generator: torch generator for the random parameters.

    Returns:
        ``[n, n_variants, resolution, resolution]``; with ``return_params`` also a dict
        of ``rotation`` (degrees), ``scale``, ``translation`` (``[.., 2]`` source pixels,
        x then y), each ``[n, n_variants, ...]``.
    """
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3 or images.shape[-1] != images.shape[-2]:
        raise WeightSpaceError(f"affine_variants expects square images [n, H, W], got shape {tuple(images.shape)}")
    if n_variants < 1:
        raise WeightSpaceError(f"n_variants must be >= 1, got {n_variants}")
    n, side = images.shape[0], images.shape[-1]
    res = resolution or side
    dtype, device = images.dtype, images.device

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        return lo + (hi - lo) * u

    angle = uniform((n, n_variants), -max_rotation, max_rotation)
    scale = uniform((n, n_variants), *scale_range)
    shift = uniform((n, n_variants, 2), -max_translation, max_translation)
    angle[:, 0], scale[:, 0], shift[:, 0] = 0.0, 1.0, 0.0

    # affine_grid maps output coords to input coords, so build the inverse transform:
    # in = R(-a) (out - t) / s, with t in normalized units (one pixel = 2 / (side - 1)).
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / scale[..., None, None]
    t = shift * (2.0 / max(side - 1, 1))
    offset = -(inv @ t.unsqueeze(-1))
    theta = torch.cat([inv, offset], dim=-1).reshape(n * n_variants, 2, 3)
    grid = F.affine_grid(theta, [n * n_variants, 1, res, res], align_corners=True)
    src = (images - background).unsqueeze(1).expand(n, n_variants, side, side).reshape(n * n_variants, 1, side, side)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + background
    out = out.reshape(n, n_variants, res, res)
    if res == side:
        out[:, 0] = images  # exact original, not a float-rounded resampling of it
    if return_params:
        return out, {"rotation": angle, "scale": scale, "translation": shift}
    return out


# --------------------------------------------------------------------------- MNIST-1D
# The ten 12-point digit templates of MNIST-1D (Greydanus 2020, Apache-2.0): data of the
# published recipe, needed to reproduce the dataset.
_MNIST1D_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])


def _mnist1d_templates() -> np.ndarray:
    x = _MNIST1D_TEMPLATES.copy()
    x -= x.mean(1, keepdims=True)
    x /= x.std(1, keepdims=True)
    x -= x[:, :1]  # every signal starts (and ends) at 0
    return x / 6.0


def _interp_rows(x: np.ndarray, n_out: int) -> np.ndarray:
    """Linear resampling of each row from ``linspace(0, 1, L)`` to ``linspace(0, 1, n_out)``."""
    from scipy.interpolate import interp1d

    return interp1d(np.linspace(0, 1, x.shape[-1]), x, axis=-1, kind="linear")(np.linspace(0, 1, n_out))


def mnist1d_arrays(
    num_samples: int = 5000,
    train_split: float = 0.8,
    seed: int = 42,
    *,
    template_len: int = 12,
    padding: tuple[int, int] = (36, 60),
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
    final_seq_length: int = 40,
) -> dict[str, np.ndarray]:
    """Generate MNIST-1D (float64 numpy; keys ``x, y, x_test, y_test``).

    Per sample: the class template (+1e-8) is zero-padded on the right by
    ``U{padding}`` points and stretched to ``template_len + padding[1]`` points,
    scaled by ``1 + scale_coeff * U(-0.5, 0.5)``, circularly shifted by
    ``U{0..max_translation-1}``, its zero (padding) points replaced by correlated noise
    (iid N(0, corr_noise_scale^2) smoothed by a sigma-2 gaussian filter), iid
    N(0, iid_noise_scale^2) noise added, sheared by a linear ramp
    ``shear_scale * U(-0.5, 0.5) * linspace(-0.5, 0.5)`` and resampled to
    ``final_seq_length``. Samples are made class by class, shuffled, standardized
    with the dataset's global mean/std, and split at ``train_split``.

    Random numbers are drawn from ``numpy.random.RandomState(seed)`` in the same order
    as the reference ``mnist1d`` package (pad, scale, shift, correlated noise, iid
    noise, shear per sample; then the shuffle), so the defaults reproduce its
    ``make_dataset()``; the transforms themselves run vectorized over samples.
    """
    from scipy.ndimage import gaussian_filter1d

    templates = _mnist1d_templates()
    n_cls = len(templates)
    per_class = num_samples // n_cls
    n = per_class * n_cls
    L = template_len + padding[1]  # length after dilation
    rs = np.random.RandomState(seed)
    pads = np.empty(n, dtype=np.int64)
    scales, shears = np.empty(n), np.empty(n)
    shifts = np.empty(n, dtype=np.int64)
    corr, iid = np.empty((n, L)), np.empty((n, L))
    lo, hi = padding
    for i in range(n):  # only the draws are sequential (to keep the reference stream order)
        pads[i] = lo + int(rs.rand() * (hi - lo + 1))
        scales[i] = 1 + scale_coeff * (rs.rand() - 0.5)
        shifts[i] = rs.choice(max_translation)
        corr[i] = corr_noise_scale * rs.randn(L)
        iid[i] = iid_noise_scale * rs.randn(L)
        shears[i] = shear_scale * (rs.rand() - 0.5)
    labels = np.repeat(np.arange(n_cls), per_class)

    x = np.empty((n, L))
    base = templates[labels] + 1e-8
    for p in np.unique(pads):  # at most 25 distinct pad lengths: one resampling each
        rows = np.flatnonzero(pads == p)
        padded = np.concatenate([base[rows], np.zeros((len(rows), p))], axis=1)
        x[rows] = _interp_rows(padded, L)
    x *= scales[:, None]
    # circular shift right by k: out[j] = x[(j - k) mod L]
    x = np.take_along_axis(x, (np.arange(L)[None, :] - shifts[:, None]) % L, axis=1)
    mask = x != 0
    x = np.where(mask, x, gaussian_filter1d(corr, 2.0, axis=-1)) + iid
    x = x - shears[:, None] * np.linspace(-0.5, 0.5, L)[None, :]
    x = _interp_rows(x, final_seq_length)

    perm = rs.permutation(n)
    x, labels = x[perm], labels[perm]
    x = (x - x.mean()) / x.std()
    split = int(n * train_split)
    return {"x": x[:split], "y": labels[:split], "x_test": x[split:], "y_test": labels[split:]}


@functools.lru_cache(maxsize=None)
def _mnist1d_source() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = mnist1d_arrays()
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    n_train = len(d["y"])
    return x, y, np.arange(n_train), np.arange(n_train, len(y))
