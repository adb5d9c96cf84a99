"""The paper's claims judged on hand-made run tables, each verdict worked out by hand."""
import json

import numpy as np
import pandas as pd
import pytest
from handmade import runs_table

from gdwlib.claims import (CLAIM_NAMES, CLAIMS, claims_by_network, evaluate_claims, in_plain_words, verdict_matrix,
                           verdict_rule)

NOISY = ["BaseModel", "Fine-tuning", "Co-teach", "GLC", "L2RW", "INSW", "MWNet", "Soft-label", "Gen-label", "GDW"]
CPU = {"type": "cpu", "name": "x", "threads": 2}


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
    frame = evaluate_claims({"uniform": uniform, "long tail": long_tail, "ablation": ablation}, cost)
    return dict(zip(frame["claim"], frame["verdict"]))


def verdicts_of(frames, cost=None):
    frame = evaluate_claims(frames, cost)
    return dict(zip(frame["claim"], frame["verdict"]))


def test_claims_held_where_the_numbers_reach_the_papers_sizes():
    # 60%: GDW 81 against Other 71 (+14.1%, beyond 3%); GDW - MW-Net grows from 1.5 to 5 (paper: 1.29);
    # long tail +9.83 (paper: +8.61); the constraint helps by 14 and 20
    verdicts = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[75, 76, 77],
                          other60=[70, 71, 72], lt_gdw=[80, 81, 82], lt_mw=[70, 71, 72.5],
                          nc40=[70, 71, 72], nc60=[60, 61, 62], cost={"gdw_over_mwnet": 1.01, "machine": CPU})
    assert {k: verdicts[k] for k in ("no_extra_cost", "uniform60_gain", "gap_grows_with_noise", "longtail_0.01",
                                     "zero_mean_needed")} == {
        "no_extra_cost": "held", "uniform60_gain": "held", "gap_grows_with_noise": "held", "longtail_0.01": "held",
        "zero_mean_needed": "held"}


def test_direction_only_where_the_effect_is_beyond_noise_but_short_of_the_papers_size():
    verdicts = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[77.4, 78.3, 79.7],
                          other60=[79, 80, 81.5], lt_gdw=[80, 81, 82], lt_mw=[79, 80, 80.5],
                          nc40=[84, 85.5, 86], nc60=[80, 81, 82.5], cost={"gdw_over_mwnet": 1.2, "machine": CPU})
    # 60%: GDW leads Other by 0.83 ± 0.17 points (1.04%, short of 3%); GDW - MW-Net grows by 0.6, 0.7
    # and 0.8 (0.70 ± 0.06), beyond noise but short of the paper's 1.29; long tail +1.17 ± 0.17, short
    # of 8.61; without the constraint GDW does as well
    assert {k: verdicts[k] for k in ("no_extra_cost", "uniform60_gain", "gap_grows_with_noise", "longtail_0.01",
                                     "zero_mean_needed")} == {
        "no_extra_cost": "not held", "uniform60_gain": "direction only", "gap_grows_with_noise": "direction only",
        "longtail_0.01": "direction only", "zero_mean_needed": "not held"}
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
    # no flip-noise runs, no Table 4 baselines, no Clothing1M
    for claim in ("glc_best_flip40", "glc_beats_mwnet_flip40", "consistent_gain_over_mwnet", "gdw_best_long_tail",
                  "insw_competitive", "finetuning_hurts_long_tail", "clothing1m_best", "l2rw_clothing1m"):
        assert verdicts[claim] == "not tested", claim


def test_the_papers_own_table_2_passes_its_own_60_percent_claim_as_a_relative_gain():
    from gdwlib.report import PAPER_THRESHOLDS, paper_second_best_gain, relative_gain

    assert relative_gain(84.11, 81.55) == pytest.approx(100 * 2.56 / 81.55)
    for dataset in ("cifar10", "cifar100"):
        second, points, gain = paper_second_best_gain(f"{dataset}/0.6")
        assert gain > PAPER_THRESHOLDS[dataset]
        assert points < PAPER_THRESHOLDS[dataset]   # read as points, the paper would fail its own claim
    assert paper_second_best_gain("cifar10/0.6")[:2] == ("GLC", pytest.approx(2.56))
    assert paper_second_best_gain("cifar100/0.6")[:2] == ("MWNet", pytest.approx(3.12))


def test_the_60_percent_claim_is_judged_as_a_relative_gain():
    # GDW 81 against Other 78.5: 2.5 points (short of 3) but 3.18% of 78.5 (beyond 3%), as the paper's 2.56 points
    verdicts = claims_for(gdw40=[84, 85, 86], mw40=[82, 83, 84.5], gdw60=[80, 81, 82], mw60=[75, 76, 77],
                          other60=[77.5, 78.5, 79.5], lt_gdw=[80, 81, 82], lt_mw=[70, 71, 72.5],
                          nc40=[70, 71, 72], nc60=[60, 61, 62])
    assert verdicts["uniform60_gain"] == "held"


def noise_tables(gdw, shift: dict[tuple[str, str], float] | None = None):
    """Tables 2 and 3 on columns f/0.0, f/0.4, f/0.6 (uniform) and f/0.0, f/0.2, f/0.4 (flip): GDW at
    ``gdw`` (3 seeds, differences of 1, 2, 3 from the base so that a gap of g has standard error
    1/sqrt(3)... only where seeds differ), every other method ``shift[(method, table level)]`` below
    GDW's seed values minus a seed-dependent wiggle (0, 0.1, -0.1)."""
    shift = shift or {}
    wiggle = np.array([0.0, 0.1, -0.1])
    frames = {}
    for table, levels in (("uniform", ("0.0", "0.4", "0.6")), ("flip", ("0.0", "0.2", "0.4"))):
        values = {}
        for level in levels:
            for m in NOISY:
                d = 0.0 if m == "GDW" else shift.get((m, f"{table} {level}"), 2.0)
                values[(m, f"f/{level}")] = list(np.array(gdw) - d + (0 if m == "GDW" else wiggle))
        frames[table] = runs_table(values)
    return frames


def test_every_noise_setting_claims_on_hand_made_tables():
    gdw = [80.0, 81.0, 82.0]
    # every other method 2 points below GDW (standard error of the gap 0.058): GDW above all nine everywhere,
    # above MW-Net in every noisy setting, above Soft-label and Gen-label in all six settings
    v = verdicts_of(noise_tables(gdw))
    assert v["gdw_best_noise"] == "held" and v["consistent_gain_over_mwnet"] == "held"
    assert v["beats_label_methods"] == "held" and v["glc_best_flip40"] == "not held"   # GLC below GDW
    # Gen-label 1 point above GDW at uniform 40%: GDW is no longer best there, nor above Gen-label everywhere
    v = verdicts_of(noise_tables(gdw, {("Gen-label", "uniform 0.4"): -1.0}))
    assert v["gdw_best_noise"] == "not held" and v["beats_label_methods"] == "not held"
    # one method within noise of GDW is allowed ("nearly all"): Co-teach 0.05 below at flip 20%
    v = verdicts_of(noise_tables(gdw, {("Co-teach", "flip 0.2"): 0.05}))
    assert v["gdw_best_noise"] == "held"
    # but "outperforms Soft-label and Gen-label" needs GDW beyond noise above both: Gen-label 0.05 below is not
    v = verdicts_of(noise_tables(gdw, {("Gen-label", "flip 0.2"): 0.05}))
    assert v["beats_label_methods"] == "not held"
    # two are not
    v = verdicts_of(noise_tables(gdw, {("Co-teach", "flip 0.2"): 0.05, ("INSW", "flip 0.2"): 0.05}))
    assert v["gdw_best_noise"] == "not held"
    # at 40% flip the setting is excluded from "GDW best", and GLC 5 points above MW-Net (paper: 4.19) and
    # above every other method is the best
    v = verdicts_of(noise_tables(gdw, {("GLC", "flip 0.4"): -3.0, ("MWNet", "flip 0.4"): 2.0}))
    assert v["gdw_best_noise"] == "held" and v["glc_best_flip40"] == "held" and v["glc_beats_mwnet_flip40"] == "held"
    v = verdicts_of(noise_tables(gdw, {("GLC", "flip 0.4"): -1.0, ("MWNet", "flip 0.4"): 2.0}))
    assert v["glc_beats_mwnet_flip40"] == "direction only"   # 3 points, beyond noise, short of 4.19
    # MW-Net within noise of GDW at 20% flip: no consistent gain
    v = verdicts_of(noise_tables(gdw, {("MWNet", "flip 0.2"): 0.05}))
    assert v["consistent_gain_over_mwnet"] == "not held"


def long_tail_table(values: dict[str, float]):
    """Table 4 at mu = 1, 0.1, 0.01 with three seeds: each method its value plus a seed wiggle."""
    from gdwlib.experiments import LONG_TAIL

    wiggle = np.array([0.0, 0.1, -0.1])
    return runs_table({(m, f"f/{mu}"): list(values.get(m, 70.0) + np.array([0.0, 1.0, 2.0]) + wiggle * k)
                       for mu in ("1", "0.1", "0.01") for k, m in enumerate(LONG_TAIL)})


def test_long_tail_claims_on_hand_made_tables():
    frames = {"uniform": runs_table({("GDW", "f/0.4"): [1, 2]}),
              "long tail": long_tail_table({"GDW": 80, "INSW": 78, "BaseModel": 75, "Fine-tuning": 60})}
    v = verdicts_of(frames)
    # GDW 2 above INSW and far above the rest; INSW best of the baselines; BaseModel 15 above Fine-tuning at
    # mu = 0.1 and 0.01 (the paper's: 3.33 and 10.01)
    assert v["gdw_best_long_tail"] == "held" and v["insw_competitive"] == "held"
    assert v["finetuning_hurts_long_tail"] == "held"
    v = verdicts_of({**frames, "long tail": long_tail_table({"GDW": 80, "INSW": 70, "Balanced": 72, "BaseModel": 75,
                                                             "Fine-tuning": 70})})
    assert v["insw_competitive"] == "not held"   # below Balanced and BaseModel
    assert v["finetuning_hurts_long_tail"] == "direction only"   # 5 points: short of 10.01 at mu = 0.01


def test_a_second_network_has_its_own_verdicts_and_the_plain_words_follow_them():
    gdw = [80.0, 81.0, 82.0]
    first = noise_tables(gdw)
    second = {"uniform": first["uniform"][first["uniform"].method.isin(["BaseModel", "MWNet", "GDW"])],
              "flip": first["flip"][first["flip"].method.isin(["BaseModel", "MWNet", "GDW"])]}
    first["uniform"] = first["uniform"].assign(result=[{"config": {"model": "mlp_bn"}}] * len(first["uniform"]))
    second["uniform"] = second["uniform"].assign(result=[{"config": {"model": "small_cnn_strided"}}] * len(
        second["uniform"]))
    claims = claims_by_network(first, second, {"gdw_over_mwnet": 0.9, "machine": CPU})
    assert set(claims["network"]) == {"MLP 784-256-256-10 with BatchNorm",
                                      "CNN with two strided convolutions of 8 and 16 channels, no BatchNorm"}
    assert len(claims) == 2 * len(CLAIMS) and list(dict.fromkeys(claims["claim"])) == list(CLAIMS)
    cnn = claims[claims.network.str.startswith("CNN")].set_index("claim")["verdict"]
    assert cnn["consistent_gain_over_mwnet"] == "held" and cnn["gdw_best_noise"] == "not tested"
    words = in_plain_words(claims)
    cnn_words = words.split("\n\n")[1]
    reproduced = cnn_words.split("Reproduced (")[1].split(".")[0]
    assert CLAIM_NAMES["consistent_gain_over_mwnet"] in reproduced and CLAIM_NAMES["gdw_best_noise"] not in reproduced
    assert CLAIM_NAMES["gdw_best_noise"] in cnn_words.split("Not tested here (")[1]
    matrix = verdict_matrix(claims).data
    assert matrix.loc[CLAIM_NAMES["gdw_best_noise"]].tolist() == ["held", "not tested"]
    assert "_" not in "".join(matrix.index)   # readable names, not keys


def test_the_rule_states_the_error_rate_of_two_standard_errors():
    # Student's t with 2 degrees of freedom: P(|T| > 2) = 1 - 2 / sqrt(6) in closed form
    text = verdict_rule([3, 5])
    assert f"{100 * (1 - 2 / np.sqrt(6)):.0f}% of the time with 3 seeds" in text
    assert "12% of the time with 5 seeds" in text


def test_a_group_of_runs_with_no_cells_is_not_tested():
    # collect([]) is a frame without columns: the smoke profile's second network has no flip runs
    frames = noise_tables([80.0, 81.0, 82.0])
    verdicts = verdicts_of({"uniform": frames["uniform"], "flip": pd.DataFrame([])})
    assert verdicts["consistent_gain_over_mwnet"] == "not tested" and verdicts["gdw_best_noise"] == "held"


def test_the_claims_read_as_text_each_with_the_papers_words_and_a_line_per_network():
    from gdwlib.claims import claims_markdown

    claims = pd.DataFrame([
        {"claim": "longtail_0.01", "network": "MLP", "verdict": "direction only", "our runs show": "gap +1", "the paper says": "8.6"},
        {"claim": "longtail_0.01", "network": "CNN", "verdict": "not tested", "our runs show": "μ = 1: no runs", "the paper says": "8.6"},
        {"claim": "no_extra_cost", "network": "MLP", "verdict": "held", "our runs show": "ratio 0.9", "the paper says": "free"}])
    assert claims_markdown(claims) == (
        f"**{CLAIM_NAMES['longtail_0.01']}.** The paper: 8.6.\n- MLP: ***direction only***. Gap +1.\n"
        "- CNN: ***not tested***. μ = 1: no runs.\n\n"   # not "Μ", a capital mu that reads as M
        "**No extra cost over MW-Net.** The paper: free.\n- MLP: ***held***. Ratio 0.9.")


def test_the_cost_ratio_is_the_median_of_each_rounds_paired_ratio(tmp_path):
    # Round 2 ran while the machine was loaded (both variants slow); per-round ratios are
    # 100/110, 300/200 = 1.5 and 96/100 = 0.96 -> median 0.96, whereas the ratio of the two
    # medians would be 100/110 = 0.91, and a ratio of means 1.21.
    from gdwlib.claims import claim_cost
    from gdwlib.report import iteration_cost

    rounds = {"BaseModel": [40, 90, 41], "MWNet": [110, 200, 100], "GDW": [100, 300, 96]}
    variants = {k: {"ms_median": float(np.median(v)), "ms_rounds": v} for k, v in rounds.items()}
    (tmp_path / "benchmark.json").write_text(json.dumps({"shapes": {"cifar": {"variants": variants}},
                                                        "machine": CPU}))
    cost = iteration_cost(str(tmp_path))
    assert cost["gdw_over_mwnet"] == pytest.approx(0.96)
    assert cost["round_ratios"] == pytest.approx([100 / 110, 1.5, 0.96])
    shown, verdict = claim_cost(None, cost)
    assert verdict == "held"
    assert "median of 3 rounds, each round's ratio between 0.91 and 1.50" in shown
