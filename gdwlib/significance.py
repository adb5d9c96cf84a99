"""How sure a difference between two methods is, from paired seeds.

Two methods trained with the same seeds see the same data split, noise draw and initialisation,
so their accuracies are compared seed by seed: ``d_s = a_s - b_s``. The book calls a difference
"beyond noise" when the mean of the ``d_s`` exceeds two standard errors, which is a paired
t-test with ``n - 1`` degrees of freedom at the threshold ``t = 2``. Its false-positive rate
(:func:`two_se_error_rate`) is far from 5% with the few seeds a reproduction can afford, and a
table compares GDW with nine methods in several settings at once; where a page makes many such
calls together it adjusts them with Holm's step-down correction (:func:`holm`).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

FAMILY_ALPHA = 0.05   # family-wise error rate of a table's comparisons


def two_se_error_rate(n: int) -> float:
    """The chance that the "beyond two standard errors" rule calls a difference between two
    methods that are equally good, with ``n`` paired seeds (normal, independent differences):
    ``P(|T| > 2)`` for Student's t with ``n - 1`` degrees of freedom."""
    if n < 2:
        raise ValueError(f"the two-standard-error rule needs at least 2 paired seeds, got {n}")
    return float(2 * stats.t.sf(2.0, n - 1))


def paired_p_value(diffs) -> float:
    """Two-sided p-value of the paired t-test that the mean of ``diffs`` is zero (NaN with fewer
    than two differences; 0 or 1 where they do not vary)."""
    d = np.asarray(diffs, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) < 2:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(len(d))
    if se == 0:
        return 0.0 if d.mean() != 0 else 1.0
    return float(2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are left out of the
    family and stay NaN): a comparison is called at family-wise level alpha when its adjusted
    p-value is below alpha."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
