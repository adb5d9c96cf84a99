"""Long-tailed subsampling: class i keeps n_i = floor(n_max * mu ** (i / (C - 1))) training examples,
from n_max for class 0 down to n_max * mu for the last class, where mu in (0, 1] is the imbalance
factor (mu = 1 keeps every class at n_max), and at least one: a class is never emptied. (The floor
never reaches 0 in the paper's sets or the ``cpu`` profile's, whose smallest classes keep 49 and
10 images; only tiny test sets meet the bound.) Classes are chosen by their true labels, so label noise,
if any, is applied afterwards; the meta set is drawn before and stays balanced.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from .noise import Rng, check_labels


def longtail_counts(n_max: float, num_classes: int, mu: float) -> list[int]:
    """Examples kept per class, largest first: ``floor(n_max * mu ** (i / (C - 1)))`` for class i, at
    least 1 where ``n_max >= 1``."""
    if not (isinstance(mu, Real) and 0 < mu <= 1):
        raise ValueError(f"imbalance factor must lie in (0, 1], got {mu!r}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not n_max >= 0:
        raise ValueError(f"n_max must be a non-negative number of examples, got {n_max!r}")
    least = 1 if n_max >= 1 else 0
    return [max(least, math.floor(n_max * mu ** (i / (num_classes - 1)))) for i in range(num_classes)]


def longtail_indices(labels: np.ndarray, counts: Sequence[int], rng: Rng) -> np.ndarray:
    """Sorted indices keeping ``counts[i]`` examples of each class i, drawn at random without replacement."""
    if not counts or min(counts) < 0:
        raise ValueError(f"counts must give a non-negative number of examples for each class, got {list(counts)}")
    labels = check_labels(labels, len(counts))
    kept = []
    for cls, count in enumerate(counts):
        members = np.flatnonzero(labels == cls)
        if count > members.size:
            raise ValueError(f"class {cls} has {members.size} examples, fewer than the {count} asked for")
        kept.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(kept))
