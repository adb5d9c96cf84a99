"""Tables and verdicts from hand-made run tables, checked against values worked out by hand."""
import numpy as np
import pandas as pd
import pytest

from gdwlib.figures import separation
from gdwlib.report import difference, evaluate_claims, ranks, summarize, table_html


def runs_table(values: dict[tuple[str, str], list[float]], wall: dict[str, float] | None = None) -> pd.DataFrame:
    """{(method, column): accuracies over seeds 1, 2, ...} -> the frame report.collect returns."""
    rows = []
    for (method, column), accs in values.items():
        level = column.split("/")[1]
        for seed, acc in enumerate(accs, start=1):
            rows.append({"method": method, "column": column, "paper_column": f"cifar10/{level}",
                         "label": f"FMNIST {level}", "paper_label": f"CIFAR-10 {level}", "seed": seed,
                         "final_accuracy": acc, "wall_time": (wall or {}).get(method, 1.0), "status": "ok",
                         "message": "", "result": None})
    return pd.DataFrame(rows)


def test_paired_difference_and_its_standard_error():
    runs = runs_table({("GDW", "f/0.4"): [80.0, 82.0, 84.0], ("MWNet", "f/0.4"): [79.0, 80.0, 81.0]})
    d = difference(runs, "GDW", "MWNet", "f/0.4")
    # paired differences 1, 2, 3: mean 2, sample std 1, standard error 1/sqrt(3)
    assert d["diff"] == pytest.approx(2.0) and d["se"] == pytest.approx(1 / np.sqrt(3)) and d["n"] == 3


def test_best_and_second_best_per_column_with_ties():
    runs = runs_table({("A", "f/0.4"): [90.0], ("B", "f/0.4"): [89.0], ("C", "f/0.4"): [89.0], ("D", "f/0.4"): [70.0]})
    assert ranks(summarize(runs)) == {("A", "f/0.4"): 1, ("B", "f/0.4"): 2, ("C", "f/0.4"): 2}


def test_table_shows_ours_marked_and_the_papers_beside():
    runs = runs_table({("GDW", "f/0.4"): [88.0, 90.0], ("MWNet", "f/0.4"): [80.0, 80.0]})
    html = table_html(summarize(runs), "table2_uniform_noise", ["MWNet", "GDW"], ["f/0.4"], "noise")
    assert "<b>89.00 ± 1.41</b>" in html and "<u>80.00 ± 0.00</u>" in html
    assert "88.14 ± 0.35" in html and "86.46 ± 0.31" in html  # the paper's CIFAR-10 40% cells


NOISY = ["BaseModel", "Fine-tuning", "Co-teach", "GLC", "L2RW", "INSW", "MWNet", "Soft-label", "Gen-label", "GDW"]


def claims_for(gdw40, mw40, gdw60, mw60, other60, lt_gdw, lt_mw, nc40, nc60, cost=None, all_methods=True):
    """Verdicts on hand-made runs; at 60% the methods not named run ten points below ``other60``."""
    values = {("GDW", "f/0.4"): gdw40, ("MWNet", "f/0.4"): mw40, ("GDW", "f/0.6"): gdw60, ("MWNet", "f/0.6"): mw60,
              ("Other", "f/0.6"): other60}
    if all_methods:
        values.update({(m, "f/0.6"): [v - 10 for v in other60] for m in NOISY if m not in ("GDW", "MWNet")})
    uniform = runs_table(values)
    long_tail = runs_table({("GDW", "f/0.01"): lt_gdw, ("MWNet", "f/0.01"): lt_mw})
    ablation = pd.concat([uniform[uniform.method == "GDW"],
                          runs_table({("GDW (no constraint)", "f/0.4"): nc40, ("GDW (no constraint)", "f/0.6"): nc60})])
    frame = evaluate_claims(uniform, long_tail, ablation, cost)
    return dict(zip(frame["claim"], frame["verdict"]))


CPU = {"type": "cpu", "name": "x", "threads": 2}


def test_claims_held_where_the_numbers_reach_the_papers_sizes():
    # 60%: GDW 81 against Other 71 (+14.1%, beyond 3%); GDW - MW-Net grows from 1.5 to 5 (paper: 1.29);
    # long tail +9.83 (paper: +8.61); the constraint helps by 14 and 20
    verdicts = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[75, 76, 77],
                          other60=[70, 71, 72], lt_gdw=[80, 81, 82], lt_mw=[70, 71, 72.5],
                          nc40=[70, 71, 72], nc60=[60, 61, 62], cost={"gdw_over_mwnet": 1.01, "machine": CPU})
    assert verdicts == {"no_extra_cost": "held", "uniform60_gain": "held", "gap_grows_with_noise": "held",
                        "longtail_0.01": "held", "zero_mean_needed": "held"}


def test_direction_only_where_the_effect_is_beyond_noise_but_short_of_the_papers_size():
    verdicts = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[77.4, 78.3, 79.7],
                          other60=[79, 80, 81.5], lt_gdw=[80, 81, 82], lt_mw=[79, 80, 80.5],
                          nc40=[84, 85.5, 86], nc60=[80, 81, 82.5], cost={"gdw_over_mwnet": 1.2, "machine": CPU})
    # 60%: GDW leads Other by 0.83 ± 0.17 points (1.04%, short of 3%); GDW - MW-Net grows by 0.6, 0.7
    # and 0.8 (0.70 ± 0.06), beyond noise but short of the paper's 1.29; long tail +1.17 ± 0.17, short
    # of 8.61; without the constraint GDW does as well
    assert verdicts == {"no_extra_cost": "not held", "uniform60_gain": "direction only",
                        "gap_grows_with_noise": "direction only", "longtail_0.01": "direction only",
                        "zero_mean_needed": "not held"}
    within_noise = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[78, 79, 79.5],
                              other60=[70, 71, 72], lt_gdw=[80, 81, 82], lt_mw=[70, 71, 72], nc40=[70, 71, 72],
                              nc60=[60, 61, 62])
    assert within_noise["gap_grows_with_noise"] == "not held"   # growth 0.33 ± 0.33
    assert within_noise["no_extra_cost"] == "not tested"   # without a cost measurement


def test_a_claim_about_methods_that_did_not_run_is_not_tested():
    verdicts = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[75, 76, 77],
                          other60=[70, 71, 72], lt_gdw=[80, 81, 82], lt_mw=[70, 71, 72.5],
                          nc40=[70, 71, 72], nc60=[60, 61, 62], all_methods=False)
    assert verdicts["uniform60_gain"] == "not tested"


def test_the_papers_own_table_2_passes_its_own_60_percent_claim_as_a_relative_gain():
    from gdwlib.report import PAPER_THRESHOLDS, paper_second_best_gain, relative_gain

    assert relative_gain(84.11, 81.55) == pytest.approx(100 * 2.56 / 81.55)
    for dataset in ("cifar10", "cifar100"):
        second, points, gain = paper_second_best_gain(f"{dataset}/0.6")
        assert gain > PAPER_THRESHOLDS[dataset]
        assert points < PAPER_THRESHOLDS[dataset]   # read as points, the paper would fail its own claim
    assert paper_second_best_gain("cifar10/0.6")[:2] == ("GLC", pytest.approx(2.56))
    assert paper_second_best_gain("cifar100/0.6")[:2] == ("MWNet", pytest.approx(3.12))


def test_separation_counts_pairs():
    # clean {1, 3}, noisy {2, 2}: (1 > 2)=0, (3 > 2)=1 per noisy value -> 2 of 4 pairs
    assert separation(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert separation(np.array([2.0]), np.array([2.0])) == 0.5  # a tie counts half
    assert separation(np.array([5.0, 6.0]), np.array([1.0])) == 1.0


def test_compute_summary_sums_the_wall_times_of_the_result_files():
    from gdwlib.report import compute_summary

    results = [{"device": {"type": "cpu", "name": "Xeon", "threads": 1}, "wall_time": 1800.0, "history": [{}] * 12},
               {"device": {"type": "cuda", "name": "H200", "threads": 4}, "wall_time": 5400.0, "history": [{}] * 80}]
    text = compute_summary(results)
    assert text.startswith("2 runs, 12-80 epochs each, on cpu (Xeon); cuda (H200) (1-4 thread(s) per run)")
    assert "2.00 hours of training in all" in text
    assert compute_summary([]) == "No finished runs yet."


def test_setting_caption_names_what_produced_the_numbers():
    from gdwlib.report import setting_caption

    def result(method, seed, model="mlp_bn"):
        return {"config": {"method": method, "seed": seed, "dataset": "fashion-mnist", "model": model,
                           "train_size": 10_000, "epochs": 12, "override": None},
                "device": {"type": "cpu", "name": "Xeon"}, "code": {"commit": "abc123"},
                "data": {"train_size": 10_000}, "history": [{}] * 12}

    mlp = setting_caption(pd.DataFrame({"result": [result("GDW", 1), result("GLC", 2), None]}))
    assert mlp == ("Fashion-MNIST, MLP 784-256-256-10 with BatchNorm, 10,000 training images (subset), 12 epochs "
                   "(GLC: see their set-up), seeds 1, 2; 2 runs on cpu (Xeon); gdwlib abc123")
    cnn = setting_caption(pd.DataFrame({"result": [result("GDW", s, "small_cnn_strided") for s in (1, 2, 3)]}))
    assert "12 epochs, seeds 1, 2, 3; 3 runs" in cnn and "set-up" not in cnn
    assert setting_caption(pd.DataFrame({"result": [None]})) == "No finished runs yet."


def test_the_60_percent_claim_is_judged_as_a_relative_gain():
    # GDW 81 against Other 78.5: 2.5 points (short of 3) but 3.18% of 78.5 (beyond 3%), as the paper's 2.56 points
    verdicts = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[75, 76, 77],
                          other60=[77.5, 78.5, 79.5], lt_gdw=[80, 81, 82], lt_mw=[70, 71, 72.5],
                          nc40=[70, 71, 72], nc60=[60, 61, 62])
    assert verdicts["uniform60_gain"] == "held"


def test_fine_tunings_time_includes_the_basemodel_run_it_starts_from():
    from gdwlib.report import run_times

    runs = runs_table({("BaseModel", "f/0.4"): [1, 1], ("Fine-tuning", "f/0.4"): [1, 1], ("GDW", "f/0.4"): [1, 1]},
                      wall={"BaseModel": 10.0, "Fine-tuning": 2.0, "GDW": 30.0})
    times = run_times(runs)
    assert times.loc["Fine-tuning", "seconds per run"] == 12.0 and times.loc["GDW", "x BaseModel"] == 3.0
