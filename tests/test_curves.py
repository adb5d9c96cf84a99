"""Tables 2-4 as plots: what each line of the figure holds, checked against the runs and the paper."""
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from gdwlib.curves import accuracy_curves, level_of  # noqa: E402
from gdwlib.report import paper_results  # noqa: E402


def fake_runs(levels, methods, accuracy) -> pd.DataFrame:
    rows = []
    for level in levels:
        for method in methods:
            for seed in (1, 2, 3):
                rows.append({"method": method, "column": f"fashion-mnist/{level}", "paper_column": f"cifar10/{level}",
                             "label": "", "paper_label": "", "seed": seed,
                             "final_accuracy": accuracy(method, level, seed), "status": "ok"})
    return pd.DataFrame(rows)


def line(ax, label):
    (container,) = [c for c in ax.containers if c.get_label() == label]
    return container.lines[0]


def test_noise_curves_hold_the_seed_means_and_the_paper_values():
    acc = lambda m, level, s: {"GDW": 80.0, "MWNet": 70.0, "BaseModel": 60.0}[m] - 10 * float(level) + s  # noqa: E731
    runs = fake_runs(["0.0", "0.4", "0.6"], ["BaseModel", "MWNet", "GDW"], acc)
    fig = accuracy_curves(runs, "table2_uniform_noise", ["BaseModel", "MWNet", "GDW"], "noise ratio")
    ours, cifar10, cifar100 = fig.axes
    x, y = line(ours, "GDW").get_data()
    assert list(x) == [0.0, 0.4, 0.6] and np.allclose(y, [82.0, 78.0, 76.0])   # seeds 1-3: mean + 2
    paper = paper_results()["table2_uniform_noise"]["rows"]["MWNet"]
    x, y = line(cifar100, "MWNet").get_data()
    assert np.allclose(y, [paper[f"cifar100/{lv}"]["mean"] for lv in ("0.0", "0.4", "0.6")])
    assert "ours" in ours.get_title() and "paper" in cifar10.get_title()
    assert line(ours, "GDW").get_linewidth() == line(ours, "BaseModel").get_linewidth() > 2


def test_imbalance_curves_run_from_balanced_to_the_most_imbalanced_on_a_log_axis():
    runs = fake_runs(["1", "0.1", "0.01"], ["GDW", "Focal"], lambda m, level, s: 50 + 10 * float(level))
    fig = accuracy_curves(runs, "table4_long_tail", ["GDW", "Focal"], "imbalance factor")
    ours = fig.axes[0]
    x, _ = line(ours, "GDW").get_data()
    assert list(x) == [1.0, 0.1, 0.01]
    assert ours.get_xscale() == "log" and ours.xaxis_inverted()
    assert line(ours, "Focal").get_linewidth() < line(ours, "GDW").get_linewidth()   # only GDW, MW-Net, Base bold


def test_level_of_reads_the_column_key():
    assert level_of("cifar10/0.01") == pytest.approx(0.01) and level_of("fashion-mnist/0.4") == pytest.approx(0.4)
