"""Figures 3-6 judged by the book's one rule: the per-seed statistics and the verdicts, on
hand-made numbers (no runs)."""
import numpy as np
import pandas as pd
import pytest

from gdwlib.figures import STATISTICS, findings, increase_ratios, instance_moves, judge


def test_judge_applies_the_rule_to_per_seed_effects():
    # mean 0.2, std 0.1, se 0.1 / sqrt(4) = 0.05: beyond noise (0.2 > 0.1)
    effects = [0.1, 0.2, 0.2, 0.3]
    v, mean, se, n = judge(effects, size=0.15)
    assert (v, n) == ("held", 4) and mean == pytest.approx(0.2) and se == pytest.approx(np.std(effects, ddof=1) / 2)
    assert judge(effects, size=0.25)[0] == "direction only"
    assert judge(effects)[0] == "held"                       # no size stated
    # mean 0.05, se 0.05: within noise (0.05 < 0.1)
    assert judge([-0.05, 0.05, 0.05, 0.15])[0] == "not held"
    assert judge([-0.3, -0.2, -0.2, -0.1])[0] == "not held"  # the other way


def test_judge_needs_two_seeds_and_skips_missing_ones():
    assert judge([0.4])[0] == "not tested" and judge([0.4])[3] == 1
    assert judge([])[0] == "not tested" and judge([])[3] == 0
    assert judge([0.3, np.nan, 0.31, np.nan])[3] == 2


def stats(**columns) -> pd.DataFrame:
    """A per-seed statistics frame; unset statistics are 0.5 (no effect anywhere)."""
    n = len(next(iter(columns.values())))
    return pd.DataFrame({name: columns.get(name.replace(", ", "_").replace(" ", "_").replace("-", "_"), [0.5] * n)
                         for name in STATISTICS}, index=pd.Index(range(1, n + 1), name="seed"))


def test_figure5_is_direction_only_when_the_gap_is_real_but_short_of_the_papers():
    # non-target 58%, true target 39%: a gap of 19 points, beyond noise, short of 65 - 20 = 45
    frame = stats(non_target_clean=[0.58, 0.57, 0.58], non_target_noisy=[0.58, 0.57, 0.58],
                  true_target_noisy=[0.39, 0.38, 0.39])
    row = findings(frame).set_index("figure").loc["figure5"]
    assert row["verdict"] == "direction only" and row["seeds"] == 3
    assert "+19.0 ±" in row["our runs show"]
    held = stats(non_target_clean=[0.66, 0.65, 0.64], non_target_noisy=[0.65, 0.66, 0.64],
                 true_target_noisy=[0.15, 0.18, 0.16])
    assert findings(held).set_index("figure").loc["figure5", "verdict"] == "held"


def test_figure6_is_judged_against_half_and_the_papers_ten_percent():
    rows = lambda r: findings(stats(C_2_up_on_C_1=r)).set_index("figure").loc["figure6"]  # noqa: E731
    assert rows([0.05, 0.08, 0.07])["verdict"] == "held"
    assert rows([0.33, 0.42, 0.16, 0.45, 0.42])["verdict"] == "direction only"   # 36% +- 5%: below 50%, above 10%
    assert rows([0.45, 0.55, 0.50])["verdict"] == "not held"


def test_figures_3_and_4_state_no_size_and_figure4_needs_both_methods():
    frame = stats(clean_above_noisy=[0.95, 0.96, 0.96], GDW_splits=[0.9, 0.8, 0.85],
                  MW_Net_lowers_all=[0.55, 0.45, 0.5])
    out = findings(frame).set_index("figure")
    assert out.loc["figure3", "verdict"] == "held"
    assert out.loc["figure4", "verdict"] == "not held"   # MW-Net lowers all weights only half the time
    frame["MW-Net lowers all"] = [0.9, 0.95, 0.85]
    assert findings(frame).set_index("figure").loc["figure4", "verdict"] == "held"


def test_one_seed_is_not_tested_and_says_why():
    out = findings(stats(clean_above_noisy=[0.95])).set_index("figure")
    assert (out["verdict"] == "not tested").all() and (out["seeds"] == 1).all()
    assert out.loc["figure3", "our runs show"].startswith("one seed: no standard error")
    assert out.loc["figure4", "seeds"] == 1
    nothing = findings(stats(clean_above_noisy=[np.nan, np.nan])).set_index("figure").loc["figure3"]
    assert nothing["verdict"] == "not tested" and nothing["seeds"] == 0
    assert nothing["our runs show"].startswith("no seed's runs recorded it")
    assert list(findings(stats(clean_above_noisy=[0.95])).columns) == ["figure", "the paper says", "our runs show",
                                                                       "verdict", "seeds"]


def test_instance_moves_counts_the_noisy_instances_iterations():
    # 3 classes; instance 0 labelled 1, truly 0 (noisy); instance 1 clean (ignored)
    before = np.full(3, 0.5)
    split = np.stack([before, [0.4, 0.3, 0.7]])     # true class down, class 2 (other non-target) up
    all_down = np.stack([before, [0.4, 0.4, 0.4]])
    neither = np.stack([before, [0.6, 0.4, 0.4]])
    clean = np.stack([before, [0.1, 0.9, 0.9]])
    rows = np.stack([np.stack([split, clean]), np.stack([all_down, clean]), np.stack([neither, clean]),
                     np.stack([np.full((2, 3), np.nan), clean])])   # epoch 4: not seen
    assert instance_moves(rows, np.array([1, 1]), np.array([0, 1])) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert np.isnan(instance_moves(rows, np.array([1, 1]), np.array([1, 1]))[0])   # no noisy instance


def test_increase_ratios_divide_counts_and_leave_empty_categories_nan():
    counts = np.array([[[3, 4], [0, 0]], [[1, 2], [5, 10]]])
    ratio = increase_ratios(counts)
    assert ratio[0, 0] == 0.75 and np.isnan(ratio[0, 1]) and ratio[1].tolist() == [0.5, 0.5]


def test_figure4_draws_an_instance_that_a_cut_epoch_never_reached(monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    from gdwlib import figures

    rows = np.full((2, 1, 2, 3), np.nan)            # epoch 1 of 2: the instance was not seen
    rows[1, 0] = [[0.5, 0.5, 0.5], [0.2, 0.4, 0.7]]
    monkeypatch.setattr(figures, "weights", lambda config: {"tracked": np.array([7]), "tracked_rows": rows})
    for epoch, top in ((0, None), (1, 1.4 * 0.7)):
        axes = figures.figure4(None, None, 7, epoch, ["a", "b", "c"], (1, 0))
        if top is not None:   # room above the tallest bar for the legend
            assert axes[0].get_ylim()[1] == pytest.approx(top)
