"""Label corruption through a row-stochastic corruption matrix M, where M[i, j] is the probability
that an image of true class i carries label j. Two families are built: uniform noise, in the public
code's form (the label is redrawn from all C classes, the true one included, so the real flip rate
is ratio * (C - 1) / C) or in the paper's (the label always moves to another class), and flip noise
(each class moves to one other class, chosen once per class). Labels are then redrawn row by row;
with a ``numpy.random.RandomState`` the draws equal the code's per-label ``np.random.choice`` calls.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

Rng = np.random.Generator | np.random.RandomState


def check_ratio(ratio: float) -> None:
    """A noise ratio in [0, 1]; NaN is refused too."""
    if not (isinstance(ratio, Real) and 0 <= ratio <= 1):
        raise ValueError(f"noise ratio must lie in [0, 1], got {ratio!r}")


def _check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


def uniform_noise_matrix(num_classes: int, ratio: float, variant: str = "code") -> np.ndarray:
    """Uniform noise: ``"code"`` mixes in ratio/C everywhere, ``"paper"`` spreads ratio over the C-1 other classes."""
    _check_num_classes(num_classes)
    check_ratio(ratio)
    eye = np.eye(num_classes)
    if variant == "code":
        return (1 - ratio) * eye + ratio / num_classes
    if variant == "paper":
        return (1 - ratio) * eye + ratio / (num_classes - 1) * (1 - eye)
    raise ValueError(f"unknown uniform-noise variant {variant!r}: use 'code' (public code) or 'paper' (paper text)")


def flip_noise_matrix(num_classes: int, ratio: float, seed: int = 1) -> np.ndarray:
    """Flip noise: row i keeps 1-ratio on the diagonal and puts ratio on one other class drawn at random.

    The targets are drawn one row after the other from ``RandomState(seed)``, as the public code does,
    so several classes may flip to the same target.
    """
    _check_num_classes(num_classes)
    check_ratio(ratio)
    rng = np.random.RandomState(seed)
    matrix = (1 - ratio) * np.eye(num_classes)
    classes = np.arange(num_classes)
    for i in classes:
        matrix[i, rng.choice(classes[classes != i])] = ratio
    return matrix


def check_noise_matrix(matrix: np.ndarray) -> None:
    """A square, finite, non-negative matrix whose rows sum to 1."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the noise matrix must be square (C, C), got shape {matrix.shape}")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError("the noise matrix must hold finite, non-negative probabilities")
    sums = matrix.sum(1)
    bad = np.flatnonzero(~np.isclose(sums, 1, rtol=0, atol=1e-8))
    if bad.size:
        raise ValueError(f"every row of the noise matrix must sum to 1; row {bad[0]} sums to {sums[bad[0]]}")


def check_labels(labels: np.ndarray, num_classes: int, name: str = "labels") -> np.ndarray:
    """``labels`` as a 1-D int64 array with every value in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"`{name}` must be a 1-D array of integer class indices, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"`{name}` must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def corrupt_labels(labels: np.ndarray, matrix: np.ndarray, rng: Rng) -> np.ndarray:
    """Noisy labels: label i of each example redrawn from row i of ``matrix``.

    One uniform number per example, in order, mapped through the row's cumulative distribution:
    the same rule as ``RandomState.choice(C, p=row)``, so a ``RandomState`` reproduces the code's loop.
    """
    check_noise_matrix(matrix)
    labels = check_labels(labels, len(matrix))
    uniforms = rng.random(labels.size)
    noisy = np.empty_like(labels)
    for i, row in enumerate(np.asarray(matrix, dtype=np.float64)):
        cdf = np.cumsum(row)
        members = labels == i
        noisy[members] = np.searchsorted(cdf / cdf[-1], uniforms[members], side="right")
    return noisy


def true_flip_rate(matrix: np.ndarray) -> float:
    """Fraction of labels changed, averaged over classes of equal size: 1 - mean of the diagonal."""
    check_noise_matrix(matrix)
    return 1 - math.fsum(np.diag(matrix)) / len(matrix)
