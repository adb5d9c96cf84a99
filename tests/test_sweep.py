"""Sweeps: parallel workers give the same results as one process; dependencies train first."""
import pytest

from gdwlib import sweep, train
from gdwlib.methods import METHODS
from gdwlib.profiles import profile_config


def configs(tmp_path, seeds=(1, 2)):
    return [profile_config("smoke", "fashion-mnist", method="BaseModel", seed=s, results_dir=str(tmp_path),
                           device="cpu") for s in seeds]


def test_parallel_workers_match_one_process(tmp_path):
    parallel = sweep.run_all(configs(tmp_path / "p"), workers=2, threads=1, progress=False)
    serial = sweep.run_all(configs(tmp_path / "s"), workers=1, threads=1, progress=False)
    for a, b in zip(parallel, serial):
        assert [h["test_accuracy"] for h in a["history"]] == [h["test_accuracy"] for h in b["history"]]
        assert a["run_id"] == b["run_id"]


def test_finished_runs_are_skipped(tmp_path, monkeypatch):
    first = sweep.run_all(configs(tmp_path, seeds=(1,)), workers=1, progress=False)
    monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("retrained"))
    assert sweep.run_all(configs(tmp_path, seeds=(1,)), workers=1, progress=False) == first


def test_required_runs_come_in_an_earlier_wave(tmp_path, monkeypatch):
    base, other = configs(tmp_path, seeds=(1, 2))
    dependent = base.replace(method="MWNet")
    monkeypatch.setattr(METHODS["MWNet"], "requirements", classmethod(lambda cls, c: [c.replace(method="BaseModel")]))
    waves = sweep._waves([dependent, other])
    assert waves == [[base], [dependent, other]]
    assert sweep._waves([dependent, base]) == [[base], [dependent]]


def test_a_diverging_run_is_recorded_and_not_retried(tmp_path, monkeypatch):
    bad = configs(tmp_path, seeds=(1,))[0].replace(lr=1e30)
    good = configs(tmp_path, seeds=(2,))[0]
    results = sweep.run_all([bad, good], workers=1, progress=False)
    assert results[0] is None and results[1]["final_accuracy"] > 20
    assert "at epoch 1, iteration" in sweep.failure(bad)["message"]
    monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("retried a diverged run"))
    sweep.run_all([bad, good], workers=1, progress=False)
