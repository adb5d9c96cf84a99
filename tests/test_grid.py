"""The experiment grid: each table is the setting the paper describes, and each cell of a rendered
table is the mean and standard deviation of its own result files."""
import re

import numpy as np
import pytest

from gdwlib.experiments import ablation_cells, figure_configs, table_cells
from gdwlib.report import collect, summarize, table_html
from gdwlib.results import write_json
from gdwlib.train import run_directory


def settings(cells):
    return {(c.config.noise, c.config.ratio, c.config.imbalance) for c in cells}


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_tables_2_to_4_are_the_papers_settings(profile):
    assert settings(table_cells("table2", profile)) == {("none", 0.0, 1.0), ("uniform", 0.4, 1.0), ("uniform", 0.6, 1.0)}
    assert settings(table_cells("table3", profile)) == {("none", 0.0, 1.0), ("flip", 0.2, 1.0), ("flip", 0.4, 1.0)}
    assert settings(table_cells("table4", profile)) == {("none", 0.0, 1.0), ("none", 0.0, 0.1), ("none", 0.0, 0.01)}
    datasets = {"cpu": {"fashion-mnist"}, "paper": {"cifar10", "cifar100"}}[profile]
    seeds = {"cpu": {1, 2, 3, 4, 5}, "paper": {1, 2, 3, 4, 5}}[profile]   # five, as the paper
    for table in ("table2", "table3", "table4"):
        cells = table_cells(table, profile)
        assert {c.config.dataset for c in cells} == datasets and {c.config.seed for c in cells} == seeds
        assert all(c.config.method == c.method and c.config.constraint for c in cells)


def test_paper_profile_is_the_papers_training_setting():
    for c in table_cells("table2", "paper"):
        assert (c.config.model, c.config.epochs, c.config.lr, c.config.batch_size) == ("resnet32", 80, 0.1, 100)
        assert c.config.outer_lr == {"cifar10": 100.0, "cifar100": 1000.0}[c.config.dataset]
        assert c.config.meta_per_class * c.config.num_classes == 1000


def test_ablation_drops_only_the_constraint():
    cells = ablation_cells("cpu")
    gdw = {(c.column, c.config.seed): c.config for c in cells if c.method == "GDW"}
    ablated = [c for c in cells if c.method == "GDW (no constraint)"]
    assert len(ablated) == len(gdw) == 15   # 3 noise ratios x 5 seeds
    for c in ablated:
        assert c.config.constraint is False
        assert c.config == gdw[(c.column, c.config.seed)].replace(constraint=False)
    assert all(c.config.constraint for c in cells if c.method in ("GDW", "MWNet"))
    assert settings(cells) == {("none", 0.0, 1.0), ("uniform", 0.4, 1.0), ("uniform", 0.6, 1.0)}


def test_second_network_runs_the_headline_and_the_ablation_on_a_cnn():
    from gdwlib.experiments import grid, second_network_cells, second_network_flip_cells

    cells = second_network_cells("cpu")
    assert {c.config.model for c in cells} == {"small_cnn_strided"}
    assert {(c.method, c.column, c.config.seed) for c in cells} == {
        (m, f"fashion-mnist/{r}", s) for m in ("BaseModel", "MWNet", "GDW", "GDW (no constraint)")
        for r in ("0.4", "0.6") for s in (1, 2, 3)}
    assert all(c.config.constraint == (c.method != "GDW (no constraint)") for c in cells)
    assert all(c.config.noise == "uniform" and c.config.epochs == 12 for c in cells)   # the cpu profile's runs
    flip = second_network_flip_cells("cpu")
    assert {(c.method, c.column, c.config.seed, c.config.noise) for c in flip} == {
        (m, f"fashion-mnist/{r}", s, "flip") for m in ("BaseModel", "MWNet", "GDW") for r in ("0.2", "0.4")
        for s in (1, 2, 3)}
    assert {c.config.model for c in flip} == {"small_cnn_strided"}
    assert set(grid("cpu")["second network"]) == {c.config for c in cells + flip}
    # the flip runs are the label-error grid's: the second network adds no run to the book's
    assert {c.config for c in flip} <= set(grid("cpu")["label errors"])
    assert second_network_cells("paper") == [] and "second network" not in grid("paper")


def test_the_label_error_grid_covers_every_setting_network_and_seed_and_reuses_the_tables_runs():
    from gdwlib.config import DETECTORS
    from gdwlib.experiments import detection_configs, detection_settings, grid

    bases = detection_settings("cpu")
    assert {(c.model, c.noise, c.ratio, c.imbalance, c.seed) for c in bases} == {
        (m, n, r, mu, s) for m in ("mlp_bn", "small_cnn_strided")
        for n, r, mu in (("uniform", 0.4, 1.0), ("uniform", 0.6, 1.0), ("flip", 0.2, 1.0), ("flip", 0.4, 1.0),
                         ("uniform", 0.2, 0.1)) for s in (1, 2, 3)}
    assert len(bases) == 30 and all(c.method == "BaseModel" and c.epochs == 12 for c in bases)
    runs = detection_configs("cpu")
    assert len(runs) == 30 * (3 + 4 + len(DETECTORS)) == len(set(runs))   # 3 methods, 4 folds, a retraining each
    # the MLP's noisy settings are Tables 2 and 3's runs, and the CNN's the second network's
    tables = set(grid("cpu")["table2"] + grid("cpu")["table3"] + grid("cpu")["second network"])
    shared = {c for c in runs if c.folds is None and c.drop is None and c.imbalance == 1.0}
    assert len(shared) == 3 * 3 * 4 * 2 and shared <= tables
    assert set(grid("cpu")["label errors"]) == set(runs)
    assert detection_settings("paper") == [] and "label errors" not in grid("paper")


def test_figure_runs():
    figs = figure_configs("cpu")
    for name in ("GDW", "MWNet"):
        assert (figs[name].method, figs[name].noise, figs[name].ratio, figs[name].imbalance) == (name, "uniform", 0.4, 1.0)
    lt = figs["GDW long tail"]
    assert (lt.method, lt.noise, lt.imbalance) == ("GDW", "none", 0.1)


def test_a_table_cell_is_the_mean_and_std_of_its_result_files(tmp_path):
    cells = table_cells("table2", "smoke", methods=["BaseModel", "GDW"], levels=[0.4], seeds=[1, 2, 3],
                        results_dir=str(tmp_path), device="cpu")
    accuracy = {("BaseModel", 1): 70.0, ("BaseModel", 2): 71.5, ("BaseModel", 3): 75.25,
                ("GDW", 1): 80.0, ("GDW", 2): 81.0}  # GDW seed 3 has no result: 2 of 3 runs
    for c in cells:
        if (c.method, c.config.seed) in accuracy:
            acc = accuracy[(c.method, c.config.seed)]
            write_json(run_directory(c.config) / "result.json",
                       {"final_accuracy": acc, "final_epochs": 1, "history": [{"test_accuracy": acc}],
                        "wall_time": 1.0, "config": c.config.to_dict()})
    summary = summarize(collect(cells))
    html = table_html(summary, "table2_uniform_noise", ["BaseModel", "GDW"], [cells[0].column], "noise")
    cell_text = dict(re.findall(r"<tr><th>([^<]+)</th><td>(?:<[bu]>)?([0-9.]+ ± [0-9.]+)", html))
    base = [70.0, 71.5, 75.25]
    assert cell_text["BaseModel"] == f"{np.mean(base):.2f} ± {np.std(base, ddof=1):.2f}"  # 72.25 ± 2.70
    assert cell_text["GDW"] == "80.50 ± 0.71"
    assert summary.loc[("GDW", cells[0].column), "missing"] == 1
