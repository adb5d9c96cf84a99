"""The ablation's final-accuracy readings and their seed-by-seed comparison, on hand-made
histories (no runs)."""
import numpy as np
import pandas as pd
import pytest

from gdwlib.ablation import (describe_recovery, describe_window, gaps, last_epochs_mean, late_recovery, paper_share,
                             readings, summary)
from gdwlib.experiments import ABLATED


def history(*acc):
    return [{"epoch": e + 1, "test_accuracy": a} for e, a in enumerate(acc)]


def test_last_epochs_mean_averages_the_tail_of_the_history():
    h = history(10.0, 20.0, 30.0, 60.0)
    assert last_epochs_mean(h, 1) == 60.0
    assert last_epochs_mean(h, 3) == pytest.approx((20 + 30 + 60) / 3)
    assert last_epochs_mean(h, 5) == 30.0     # shorter than the window: all of it, as a run's final accuracy


def test_the_papers_window_is_a_fraction_of_an_epoch_of_ours():
    assert paper_share(12) == pytest.approx(5 / 80 * 12)   # 0.75: the paper's last 5 of 80 epochs
    assert paper_share(80) == pytest.approx(5)
    assert "the last epoch is the nearest" in describe_window(12)
    assert "the mean of last 5 is the nearest" in describe_window(80)


def runs(histories: dict[tuple[str, int], list]) -> pd.DataFrame:
    """{(method, seed): history} -> the frame report.collect returns, one setting, an MLP."""
    return pd.DataFrame([{"method": m, "column": "fm/0.4", "label": "FM, 40%", "seed": s, "status": "ok",
                          "result": {"config": {"model": "mlp_bn"}, "history": h}}
                         for (m, s), h in histories.items()])


def test_a_late_recovery_moves_the_gap_between_readings():
    # GDW steady at 80; the ablation at 70 in seeds 1-2, and seed 3 collapses to 10 and recovers to 79
    steady = history(*[80.0] * 6)
    frame = runs({("GDW", 1): steady, ("GDW", 2): steady, ("GDW", 3): steady,
                  (ABLATED, 1): history(*[70.0] * 6), (ABLATED, 2): history(*[71.0] * 6),
                  (ABLATED, 3): history(70.0, 10.0, 10.0, 30.0, 60.0, 79.0)})
    r = readings(frame, ks=(1, 5))
    assert len(r) == 12 and set(r["reading"]) == {"last epoch", "mean of last 5"}
    g = gaps(r).set_index("reading")
    # last 5: 80 - (70, 71, 37.8) -> 10, 9, 42.2; last epoch: 80 - (70, 71, 79) -> 10, 9, 1
    assert g.loc["mean of last 5", "difference"] == pytest.approx((10 + 9 + 42.2) / 3)
    assert g.loc["last epoch", "difference"] == pytest.approx(20 / 3)
    se = np.std([10, 9, 1], ddof=1) / np.sqrt(3)
    assert g.loc["last epoch", "standard error"] == pytest.approx(se)
    assert g.loc["last epoch", "verdict"] == "held" and g.loc["mean of last 5", "verdict"] == "not held"
    text = summary(gaps(r))
    assert "(mean of last 5): within noise; last epoch: +6.67 ± " in text
    assert "Another reading calls it otherwise (last epoch: better with the constraint)" in text
    late = late_recovery(frame[frame.method == ABLATED])
    assert late["seed"] == 3 and late["rise"] == pytest.approx(79 - 37.8)
    assert "10.0% in epoch 2 of 6, 79.0% in the last" in describe_recovery(late)
    assert "the window, epochs 2-6, holds 10.0, 10.0, 30.0, 60.0, 79.0%" in describe_recovery(late)


def test_one_seed_is_not_tested():
    frame = runs({("GDW", 1): history(*[80.0] * 5), (ABLATED, 1): history(*[70.0] * 5)})
    g = gaps(readings(frame))
    assert (g["verdict"] == "not tested").all() and (g["seeds"] == 1).all()
    assert "+10.00 points over 1 seed(s) (mean of last 5): not tested (one seed); last epoch: +10.00;" in summary(g)


def test_a_short_run_is_read_over_the_epochs_it_has():
    frame = runs({("GDW", 1): history(80.0, 82.0), (ABLATED, 1): history(70.0, 60.0)})
    r = readings(frame)
    assert list(dict.fromkeys(r["reading"])) == ["last epoch", "mean of last 2"]
    assert r.set_index(["method", "reading"]).loc[(ABLATED, "mean of last 2"), "accuracy"] == 65.0
    assert "the last 2 of 2" in describe_window(2)


def test_the_per_seed_table_puts_each_seeds_readings_side_by_side():
    from gdwlib.ablation import per_seed_table

    frame = pd.DataFrame([{"network": "MLP", "setting": "Fashion-MNIST, 40%", "method": m, "seed": s, "reading": r,
                           "accuracy": a} for m, s, r, a in [("GDW", 1, "last epoch", 80.0),
                                                             ("GDW (no constraint)", 1, "last epoch", 70.004),
                                                             ("GDW", 2, "last epoch", 81.0),
                                                             ("GDW (no constraint)", 2, "last epoch", 71.0)]])
    table = per_seed_table(frame)
    assert table.loc[("MLP", "40%", 1), ("last epoch", "without")] == 70.0
    assert table.loc[("MLP", "40%", 2), ("last epoch", "with")] == 81.0
