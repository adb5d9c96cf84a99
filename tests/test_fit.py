"""gdwlib.fit: the book's trainer on a user's model and Datasets. A fit stopped mid-way resumes to
the numbers of an uninterrupted one; its files say what was learned; bad settings are refused
before anything is written."""
import csv

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import gdwlib
import gdwlib.fitting
from gdwlib import train as train_module
from gdwlib.fitting import method_options

from conftest import stop_in_evaluation

C, D = 3, 6


def blobs(n: int, noise: float, seed: int):
    """Gaussian blobs, ``noise`` of the labels moved to another class; the flipped mask."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(C, D, generator=torch.Generator().manual_seed(0)) * 2
    truth = torch.arange(n) % C
    x = centers[truth] + torch.randn(n, D, generator=g)
    flipped = torch.rand(n, generator=g) < noise
    y = torch.where(flipped, (truth + torch.randint(1, C, (n,), generator=g)) % C, truth)
    return TensorDataset(x, y), flipped.numpy()


def net():
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, C))


def small_fit(out, model=None, **changes):
    train, _ = blobs(120, 0.3, 1)
    kwargs = dict(out=out, meta_per_class=5, test=blobs(60, 0.0, 2)[0], epochs=3, batch_size=20, meta_batch_size=15,
                  progress=False)
    return gdwlib.fit(model or net(), train, **{**kwargs, **changes})


def test_a_fit_stopped_after_an_epoch_resumes_to_the_uninterrupted_numbers(tmp_path, monkeypatch):
    whole = small_fit(tmp_path / "whole")
    real = stop_in_evaluation(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        small_fit(tmp_path / "split")
    assert (tmp_path / "split" / "checkpoint.pt").exists() and not (tmp_path / "split" / "result.json").exists()
    monkeypatch.setattr(train_module, "evaluate", real)
    resumed = small_fit(tmp_path / "split")
    assert resumed["resumed_after_epochs"] == [1]
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(whole["history"])
    a, b = np.load(tmp_path / "whole" / "weights.npz"), np.load(tmp_path / "split" / "weights.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    for k, v in torch.load(tmp_path / "whole" / "model.pt").items():
        assert torch.equal(v, torch.load(tmp_path / "split" / "model.pt")[k])


def test_a_fit_writes_its_files_and_a_finished_one_is_read_back(tmp_path, monkeypatch):
    result = small_fit(tmp_path / "out", average_last=2, keep_epochs=True)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [".lock", "label_issues.csv", "model.pt", "result.json",
                                                     "weights.npz"]
    assert len(result["history"]) == 3 and result["evaluated_on"] == "test" and result["sizes"]["meta_size"] == 15
    weights = np.load(out / "weights.npz")
    assert weights["target_weight_per_epoch"].shape == (3, 120)
    meta = np.isnan(weights["mean_target_weight"])   # carved out for the meta set: never trained on
    assert meta.sum() == 15 and (weights["epochs_averaged"][~meta] == 2).all()
    rows = list(csv.DictReader(open(out / "label_issues.csv")))
    assert len(rows) == 105 and list(rows[0]) == ["path", "given", "suggested", "score"]
    assert {int(r["path"]) for r in rows} == set(np.flatnonzero(~meta).tolist())
    assert all(r["given"] != r["suggested"] for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    model = net()
    model.load_state_dict(torch.load(out / "model.pt"))
    monkeypatch.setattr("gdwlib.fitting.train_epochs", lambda *a, **k: pytest.fail("trained a finished fit again"))
    assert small_fit(out, average_last=2, keep_epochs=True) == result


@pytest.mark.parametrize("method, column", [("GDW", "mean_target_weight"), ("MWNet", "mean_instance_weight"),
                                            ("BaseModel", "mean_loss")])
def test_each_method_ranks_by_what_it_learned(tmp_path, method, column):
    small_fit(tmp_path, method=method)
    weights, rows = np.load(tmp_path / "weights.npz"), list(csv.DictReader(open(tmp_path / "label_issues.csv")))
    learned = weights[column][[int(r["path"]) for r in rows]]
    expected = learned if method == "BaseModel" else 1 - learned
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-6)


def test_a_user_optimiser_and_schedule(tmp_path, monkeypatch):
    result = small_fit(tmp_path, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), lookahead_lr=0.1,
                       schedule="constant")
    assert result["settings"]["optimizer"] == "Adam" and [h["lr"] for h in result["history"]] == [1e-2] * 3
    seen, real = [], gdwlib.fitting.FitTraining.train_step

    def spy(self, batch, meta):   # the learning rate the real update is made with
        seen.append(round(self.optimizer.param_groups[0]["lr"], 6))
        return real(self, batch, meta)

    monkeypatch.setattr(gdwlib.fitting.FitTraining, "train_step", spy)
    cosine = small_fit(tmp_path / "cos", optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    assert [round(h["lr"], 6) for h in cosine["history"]] == [0.01, 0.0075, 0.0025]
    assert seen == [0.01] * 6 + [0.0075] * 6 + [0.0025] * 6   # 105 training instances, batches of 20


@pytest.mark.parametrize("change, message", [
    (dict(method="Focal"), "unknown method 'Focal'; choose one of GDW, MWNet, L2RW, BaseModel"),
    (dict(outer_lr=5.0, method="MWNet"), r"unknown option\(s\) \['outer_lr'\] for MWNet"),
    (dict(epochs=0), "`epochs` must be a positive whole number"),
    (dict(trusted=[0, 1, 2]), "give the meta set in exactly one way"),
    (dict(meta_per_class=None, trusted=[0, 3]), r"no trusted instance of class\(es\) \[2\]"),
    (dict(meta_per_class=50), "fewer than the 50 asked for the meta set"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        small_fit(tmp_path / "out", **change)
    assert not (tmp_path / "out").exists()


def test_an_output_folder_of_another_fit_is_refused(tmp_path):
    small_fit(tmp_path)
    with pytest.raises(ValueError, match="holds a fit with other settings"):
        small_fit(tmp_path, epochs=4)


def test_the_options_fit_accepts_are_the_reweighters_own():
    assert {"outer_lr", "clip", "step_rule", "omega_lr", "constraint", "vnet_lr", "meta_method"} <= method_options("GDW")
    assert "outer_lr" not in method_options("MWNet") and "vnet_lr" not in method_options("L2RW")
