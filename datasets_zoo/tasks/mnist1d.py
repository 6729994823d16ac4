"""MNIST-1D (Greydanus 2020), generated procedurally (no download)."""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["mnist1d_arrays", "mnist1d_source"]

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
def mnist1d_source() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x [5000, 40] float32, y int64, train indices, test indices) of the default MNIST-1D."""
    d = mnist1d_arrays()
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    n_train = len(d["y"])
    return x, y, np.arange(n_train), np.arange(n_train, len(y))
