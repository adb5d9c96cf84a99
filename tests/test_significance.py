"""Paired tests and Holm's correction, against scipy's own test and hand-worked adjustments."""
import numpy as np
import pytest
from handmade import runs_table
from scipy import stats

from gdwlib.report import comparison, comparison_counts, comparison_table
from gdwlib.significance import holm, paired_p_value, two_se_error_rate


def test_holm_adjusts_by_hand():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04, raised to the running maximum 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])   # capped at 1
    adjusted = holm([0.02, np.nan, 0.01])   # NaN is not part of the family
    assert adjusted[1] != adjusted[1] and adjusted[[0, 2]] == pytest.approx([0.02, 0.02])


def test_paired_p_value_is_the_paired_t_test():
    a, b = np.array([80.1, 81.4, 79.9, 82.2, 80.7]), np.array([79.0, 80.9, 80.2, 81.0, 79.8])
    assert paired_p_value(a - b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert paired_p_value([1.0]) != paired_p_value([1.0])   # one pair: NaN


def test_two_se_error_rate_by_simulation():
    # equally good methods: the 2-SE rule fires on |mean| > 2 se of n normal differences
    rng = np.random.default_rng(0)
    d = rng.normal(size=(200_000, 5))
    fired = np.abs(d.mean(1)) > 2 * d.std(1, ddof=1) / np.sqrt(5)
    assert two_se_error_rate(5) == pytest.approx(fired.mean(), abs=0.005)
    with pytest.raises(ValueError, match="at least 2 paired seeds"):
        two_se_error_rate(1)


def test_comparison_calls_a_difference_only_after_holms_correction():
    # B: 3 points below GDW with a tiny spread; C: 0.3 below, t = 2.85, p = 0.046 alone, but second of a
    # family of three after Holm (x 2); D: within noise on any reading
    gdw = [80.0, 81.0, 82.0, 83.0, 84.0]
    others = {"B": [77.0, 78.1, 78.9, 80.0, 81.0], "C": [79.5, 80.9, 81.8, 82.4, 83.9], "D": [80.5, 80.5, 82.5, 82.5, 84.0]}
    runs = runs_table({("GDW", "f/0.4"): gdw, **{(m, "f/0.4"): v for m, v in others.items()}})
    frame = comparison(runs, "GDW", list(others), ["f/0.4"])
    raw = [stats.ttest_rel(gdw, v).pvalue for v in others.values()]
    assert raw[1] < 0.05   # unadjusted, C would be called
    assert frame["p (Holm)"].tolist() == pytest.approx(np.round(holm(raw), 4).tolist())
    assert frame["verdict"].tolist() == ["GDW better", "within noise", "within noise"]
    table = comparison_table(frame)
    assert table.loc["B", "FMNIST 0.4"] == "+3.00 ± 0.03 better" and table.loc["C", "FMNIST 0.4"] == "+0.30 ± 0.10"
    assert list(table.index) == ["B", "C", "D"]   # the methods, not 0..N
    assert comparison_counts(frame) == "Across all 3 (method, setting) pairs: GDW better in 1, worse in 0, within noise in 2."
