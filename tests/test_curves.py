"""Tables 2-4 as plots: what each line of the figure holds, checked against the runs and the paper,
and that the figure reads on the book's page at the size the browser shows it."""
import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

matplotlib.use("Agg")

from gdwlib.curves import accuracy_curves, level_of  # noqa: E402
from gdwlib.experiments import TABLES  # noqa: E402
from gdwlib.report import paper_results  # noqa: E402


def fake_runs(levels, methods, accuracy, datasets=("fashion-mnist",)) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        for level in levels:
            for method in methods:
                for seed in (1, 2, 3):
                    rows.append({"method": method, "column": f"{dataset}/{level}", "paper_column": f"cifar10/{level}",
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
    ours, cifar10, cifar100 = (ax for ax in fig.axes if ax.axison)   # the legend's cell has no axes drawn
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


def table2_figure(datasets=("fashion-mnist",)):
    methods = TABLES["table2"]["methods"]
    runs = fake_runs(["0.0", "0.4", "0.6"], methods, lambda m, level, s: 80 - 10 * float(level) + s, datasets)
    return accuracy_curves(runs, "table2_uniform_noise", methods, "noise ratio"), methods


@pytest.mark.parametrize("datasets", [("fashion-mnist",), ("cifar10", "cifar100")])
def test_the_figure_is_shown_at_its_own_size_with_text_as_large_as_the_body(datasets):
    """The book's output column is 676 CSS px wide and its body text 16 px (the browser test
    measures both): a wider PNG is shrunk by the browser, its text with it. The 3-panel figure
    it replaces was 1191 px wide, its 8-pt legend 11.1 px at 100 dpi, shown at 676/1191 of that:
    6.3 px, capitals under 5 px. Every text is drawn at >= 16 px, i.e. >= 11.52 pt at 100 dpi,
    in a PNG at most 676 px wide."""
    fig, _ = table2_figure(datasets)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=fig.dpi, bbox_inches="tight")   # as Jupyter's inline backend does
    width, _ = Image.open(png).size
    assert 500 < width <= 676
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    assert len(texts) > 20   # titles, labels, tick labels, legend entries
    small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() * fig.dpi / 72 < 16]
    assert not small, f"text smaller than the body's 16 px: {small[:5]}"


def test_every_method_has_its_own_colour_and_the_three_references_stand_out():
    fig, methods = table2_figure()
    ours = fig.axes[0]
    colours = {c.get_label(): to_hex(line(ours, c.get_label()).get_color()) for c in ours.containers}
    assert set(colours) == set(methods) and len(set(colours.values())) == len(methods)
    assert (colours["GDW"], colours["MWNet"], colours["BaseModel"]) == ("#d62728", "#1f77b4", "#000000")
    widths = {m: line(ours, m).get_linewidth() for m in methods}
    bold = {"GDW", "MWNet", "BaseModel"}
    assert min(widths[m] for m in bold) > max(widths[m] for m in set(methods) - bold)
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert [t.get_text() for t in legend.get_texts()] == methods


def test_ours_down_the_left_column_the_papers_down_the_right():
    fig, methods = table2_figure(("cifar10", "cifar100"))
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert titles == ["ours: CIFAR-10", "the paper's: CIFAR-10", "ours: CIFAR-100", "the paper's: CIFAR-100"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == methods   # no free panel: below them
