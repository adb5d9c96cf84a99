"""The clean meta set: a balanced draw of ``per_class`` examples of each class from the training split.
Both draws below shuffle each class's indices (classes in order, one generator) and take the first
``per_class`` of each class as meta data and the rest as training data, which is how the public code
splits. :func:`meta_split` makes one draw, so the two sets are disjoint. :func:`overlapping_meta_split`
reproduces the code's quirk: the meta set comes from a draw seeded with 1 and the training set from a
second draw seeded with the run's seed, so most meta images are also training images (with noisy
labels) unless the two seeds are equal. Indices come back grouped by class, in the drawn order, as in
the code (that order decides which images a later label corruption hits).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .noise import Rng, check_labels


def _per_class_counts(labels: np.ndarray, per_class: int | Sequence[int]) -> list[int]:
    if isinstance(per_class, (int, np.integer)):
        labels = np.asarray(labels)
        if labels.size == 0:
            raise ValueError("labels is empty: there is nothing to split")
        per_class = [int(per_class)] * (int(labels.max()) + 1)
    if not per_class or min(per_class) < 0:
        raise ValueError(f"per_class must be non-negative, got {list(per_class)}")
    return list(per_class)


def _draw(labels: np.ndarray, counts: list[int], rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    labels = check_labels(labels, len(counts))
    meta, train = [], []
    for cls, count in enumerate(counts):
        members = np.flatnonzero(labels == cls)
        if count > members.size:
            raise ValueError(f"class {cls} has {members.size} examples, fewer than the {count} asked for the meta set")
        rng.shuffle(members)
        meta.append(members[:count])
        train.append(members[count:])
    return np.concatenate(meta).astype(np.int64), np.concatenate(train).astype(np.int64)


def meta_split(labels: np.ndarray, per_class: int | Sequence[int], rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    """``(meta_idx, train_idx)``: ``per_class`` random examples of each class (an int, or one per class), and the rest.

    With an int, the classes are 0 .. max(labels); pass a list to name classes that may be absent.
    """
    return _draw(labels, _per_class_counts(labels, per_class), rng)


def overlapping_meta_split(
    labels: np.ndarray, per_class: int | Sequence[int], *, meta_seed: int = 1, train_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(meta_idx, train_idx)`` as the public code builds them: two draws with ``RandomState``s seeded
    ``meta_seed`` and ``train_seed``, keeping the meta part of the first and the training part of the second."""
    counts = _per_class_counts(labels, per_class)
    meta, _ = _draw(labels, counts, np.random.RandomState(meta_seed))
    _, train = _draw(labels, counts, np.random.RandomState(train_seed))
    return meta, train
