"""The runs behind the label-error comparison (gdwlib.label_errors): cross-validation folds that
predict what they did not train on, and BaseModel retrained without each detector's flagged
instances, checked against cleanlab and the scores computed here from the runs' files."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gdwlib import label_errors, train
from gdwlib.config import identity, run_id
from gdwlib.data.build import build_data
from gdwlib.detection import cleanlab_issues
from gdwlib.methods import get_method
from gdwlib.profiles import profile_config


def smoke(tmp_path, **fields):
    fields = {"method": "BaseModel", **fields}
    return profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", noise="uniform",
                          ratio=0.4, **fields)


@pytest.mark.parametrize("fields, message", [
    (dict(folds=4), "folds and fold go together"), (dict(folds=4, fold=4), "0 <= fold < folds"),
    (dict(folds=1, fold=0), "folds >= 2"), (dict(drop="oracle"), "drop must name a detector"),
    (dict(method="GDW", folds=4, fold=0), "are for the BaseModel method"),
    (dict(folds=4, fold=0, drop="GDW"), "one at a time"),
])
def test_bad_fields_are_refused(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        smoke(tmp_path, **fields)


def test_the_new_fields_leave_every_earlier_run_its_name(tmp_path):
    c = smoke(tmp_path)
    assert not {"folds", "fold", "drop"} & set(identity(c))
    names = {run_id(c, "cpu"), run_id(c.replace(folds=4, fold=1), "cpu"), run_id(c.replace(drop="GDW"), "cpu")}
    assert len(names) == 3 and any("-fold1of4-" in n for n in names) and any("-without-GDW-" in n for n in names)


def test_folds_are_balanced_disjoint_and_fixed_by_the_seed():
    f = label_errors.fold_of(10, 4, seed=3)
    assert sorted(np.bincount(f).tolist()) == [2, 2, 3, 3]
    assert (f == label_errors.fold_of(10, 4, seed=3)).all() and not (f == label_errors.fold_of(10, 4, seed=4)).all()


def test_a_fold_run_trains_without_its_fold(tmp_path):
    config = smoke(tmp_path, folds=4, fold=2)
    data = build_data(config)
    method = get_method("BaseModel")(config, data, torch.device("cpu"))
    heldout = np.flatnonzero(label_errors.fold_of(len(data.train), 4, config.seed) == 2)
    assert (method.heldout == heldout).all() and len(method.data.train) == len(data.train) - len(heldout)
    trained = {tuple(x.flatten().tolist()) for x in method.data.train.images[:50]}
    assert not trained & {tuple(data.train.images[i].flatten().tolist()) for i in heldout}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The cross-validation folds of one smoke setting and its GDW and BaseModel runs, trained."""
    root = tmp_path_factory.mktemp("label-errors")
    base = smoke(root)
    for c in label_errors.detector_configs(base, "GDW") + [base]:
        train.run(c, progress=False)
    return base


def assembled_probs(base):
    fold_dirs = [train.run_directory(c) for c in label_errors.fold_configs(base)]
    probs, seen = None, []
    for d in fold_dirs:
        with np.load(d / "exports.npz") as f:
            if probs is None:
                probs = np.zeros((400, f["heldout_probs"].shape[1]))
            probs[f["heldout_index"]] = f["heldout_probs"]
            seen.extend(f["heldout_index"].tolist())
    assert sorted(seen) == list(range(400))   # every training instance predicted, once
    return probs


def test_the_folds_predict_every_training_instance_out_of_sample(finished):
    probs = assembled_probs(finished)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("detector", ["cleanlab", "GDW", "small-loss"])
def test_retraining_without_a_detectors_flagged_instances(finished, detector):
    config = finished.replace(drop=detector)
    result = train.run(config, progress=False)
    with np.load(train.run_directory(config) / "exports.npz") as f:
        dropped = f["dropped"]
    data = build_data(finished)
    labels = data.train.labels.numpy()
    found = cleanlab_issues(labels, assembled_probs(finished)).flagged
    assert found.sum() > 10   # 40% uniform noise: cleanlab finds something to compare with
    if detector == "cleanlab":
        expected = np.flatnonzero(found)
    else:
        if detector == "GDW":
            with np.load(train.run_directory(finished.replace(method="GDW")) / "weights.npz") as f:
                score = 1 - np.nanmean(f["target_weight"][-5:], axis=0)
        else:
            model = get_method("BaseModel")(finished, data, torch.device("cpu")).model
            model.load_state_dict(torch.load(train.run_directory(finished) / "model.pt"))
            with torch.no_grad():
                score = F.cross_entropy(model.eval()(data.pipeline(data.train.images, None)), data.train.labels,
                                        reduction="none").numpy()
        expected = np.sort(np.argsort(-score, kind="stable")[:found.sum()])
    np.testing.assert_array_equal(dropped, expected)
    assert result["history"] and len(dropped) == found.sum()


def test_compare_reports_each_detector_against_the_truth(finished):
    """The comparison's numbers agree with those computed here from the runs' files."""
    from sklearn.metrics import roc_auc_score

    out = label_errors.compare(finished)
    data = build_data(finished)
    wrong = (data.train.labels != data.train.true_labels).numpy()
    score = cleanlab_issues(data.train.labels.numpy(), assembled_probs(finished)).score
    c = out["detectors"]["cleanlab"]
    assert c["auroc"] == pytest.approx(roc_auc_score(wrong, score)) and c["runs"] == label_errors.FOLDS
    assert out["noisy"] == wrong.sum() and out["instances"] == 400
    assert {d["flagged"] for d in out["detectors"].values()} == {c["flagged"]}
    assert out["detectors"]["GDW"]["runs"] == 1 and out["detectors"]["GDW"]["training_seconds"] == \
        train.find_result(finished.replace(method="GDW"))["wall_time"]


def test_the_command_prints_the_comparison(finished, capsys):
    from gdwlib import cli

    args = ["label-errors", "--profile", "smoke", "--noise", "uniform", "--ratio", "0.4", "--device", "cpu",
            "--results-dir", finished.results_dir, "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert "training labels are wrong (uniform 0.4, mlp_bn, seed 1)" in out[0]
    rows = [line.split(" | ")[0].strip("| ") for line in out if line.startswith("| ") and "---" not in line]
    assert rows[1:] == ["GDW", "MWNet", "small-loss", "cleanlab"]


def hand_frame():
    """Two settings, three seeds: GDW beats cleanlab on AUROC in every seed of the first setting,
    loses in every seed of the second; on precision at k it wins one seed of each (mixed)."""
    import pandas as pd

    rows = []
    auroc = {("a", "GDW"): [0.9, 0.8, 0.85], ("a", "cleanlab"): [0.7, 0.75, 0.8],
             ("b", "GDW"): [0.6, 0.6, 0.6], ("b", "cleanlab"): [0.7, 0.65, 0.61]}
    patk = {("a", "GDW"): [0.5, 0.4, 0.4], ("a", "cleanlab"): [0.4, 0.5, 0.5],
            ("b", "GDW"): [0.5, 0.4, 0.4], ("b", "cleanlab"): [0.4, 0.5, 0.5]}
    for (setting, detector), values in auroc.items():
        for seed, (value, p) in enumerate(zip(values, patk[setting, detector]), 1):
            rows.append(dict(network="net", setting=setting, seed=seed, detector=detector, auroc=value, auprc=value,
                             precision_at_k=p, flagged=10, noisy=12, instances=100, runs=1, training_seconds=3.0,
                             retrained_accuracy={"a": 80.0, "b": 70.0}[setting] + seed,
                             **{"GDW accuracy": 81.0 + seed, "MWNet accuracy": 75.0, "BaseModel accuracy": 70.0}))
    return pd.DataFrame(rows)


def test_head_to_head_counts_settings_won_in_every_seed():
    frame = hand_frame()
    assert label_errors.head_to_head(frame, "auroc", "GDW", "cleanlab") == {"better": ["a"], "worse": ["b"], "mixed": []}
    assert label_errors.head_to_head(frame, "auroc", "cleanlab", "GDW") == {"better": ["b"], "worse": ["a"], "mixed": []}
    assert label_errors.head_to_head(frame, "precision_at_k", "GDW", "cleanlab")["mixed"] == ["a", "b"]
    assert dict(label_errors.best_detectors(frame)) == {"a": "GDW", "b": "cleanlab"}


def test_tables_give_mean_and_sample_sd_over_seeds():
    table = label_errors.metric_table(hand_frame(), "net", "auroc")
    assert table.loc["GDW", "a"] == "0.850 ± 0.050"   # sd of .9 .8 .85
    retrained = label_errors.metric_table(hand_frame(), "net", "retrained_accuracy")
    assert retrained.loc["cleanlab", "b"] == "72.00 ± 1.00"
    accuracy = label_errors.accuracy_table(hand_frame(), "net")
    assert accuracy.loc["GDW, trained on all", "a"] == "83.00 ± 1.00"
    assert accuracy.loc["BaseModel without cleanlab's flagged", "a"] == "82.00 ± 1.00"
    cost = label_errors.cost_table(hand_frame(), "net")
    assert cost.loc["wrong labels", "a"] == 12 and cost.loc["flagged by each detector", "b"] == 10


def test_verdict_says_the_counts_in_words():
    text = label_errors.verdict(hand_frame(), "the net")
    assert "(2 settings, 3 seeds each)" in text
    assert "AUROC: GDW's weight beats cleanlab in every seed in 1 of 2 settings (a), loses in every seed in 1 (b)" in text
    assert "precision at k: GDW's weight beats cleanlab in every seed in 0 of 2 settings (none)" in text
    # retrained without GDW's flagged: 81, 82, 83 (a) and 71, 72, 73 (b); GDW's own network 82, 83, 84
    assert "more accurate in every seed in 0 of 2 settings (none), less accurate in every seed in 2 (a; b)" in text
    assert "ranges from -11.00 to -1.00 points" in text
    assert "Worse than chance" not in text
    frame = hand_frame()
    frame.loc[(frame.setting == "b") & (frame.detector == "cleanlab"), "auroc"] = [0.3, 0.4, 0.2]
    assert "Worse than chance (mean AUROC below 0.5: the score ranks right labels above wrong ones): cleanlab" \
           " in b (0.300)." in label_errors.verdict(frame, "the net")
