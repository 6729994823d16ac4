"""scikit-learn's bundled 8x8 digits with the library's fixed stratified split."""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["DIGITS_TEST_SIZE", "DIGITS_SPLIT_SEED", "stratified_split", "digits_source"]

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def stratified_split(y: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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
def digits_source() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x [1797, 64] float32 in [0, 1], y int64, train indices, test indices)."""
    from sklearn.datasets import load_digits  # bundled csv in the wheel: no network

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    train_idx, test_idx = stratified_split(y, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    return x, y, train_idx, test_idx
