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


def carve_meta_set(labels: Sequence[int] | np.ndarray, *, per_class: int | None = None,
                   trusted: Sequence[int] | np.ndarray | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(meta_idx, train_idx)`` for your own training set, whose ``labels`` are partly wrong: the
    meta set is either ``per_class`` instances of each class drawn at random (whose labels you
    should then check by hand: GDW trusts them) or the ``trusted`` indices someone has checked.
    The two parts are disjoint and every class must have meta instances."""
    labels = np.asarray(labels)
    if (per_class is None) == (trusted is None):
        raise ValueError("give exactly one of `per_class` (a budget per class) and `trusted` (checked indices)")
    num_classes = int(labels.max()) + 1 if labels.size else 0
    if per_class is not None:
        return meta_split(labels, int(per_class), np.random.default_rng(seed))
    meta = np.asarray(trusted, dtype=np.int64).reshape(-1)
    if meta.size and (meta.min() < 0 or meta.max() >= labels.size):
        raise ValueError(f"`trusted` holds indices outside [0, {labels.size}): {meta[(meta < 0) | (meta >= labels.size)][:5]}")
    if np.unique(meta).size != meta.size:
        raise ValueError(f"`trusted` lists {meta.size - np.unique(meta).size} index(es) twice")
    missing = sorted(set(range(num_classes)) - set(labels[meta].tolist()))
    if missing:
        raise ValueError(f"no trusted instance of class(es) {missing}: the meta set needs every class")
    train = np.setdiff1d(np.arange(labels.size), meta)
    return meta, train
