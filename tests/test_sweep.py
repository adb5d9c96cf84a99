"""Sweeps: parallel workers give the same results as one process; dependencies train first;
the grid is counted, priced and checked without training."""
import json
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent


def gdw(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "gdwlib", *args], capture_output=True, text=True, cwd=cwd)


def test_runs_packed_on_a_device_match_one_process(tmp_path):
    packed = sweep.run_all(configs(tmp_path / "p"), devices=["cpu"], runs_per_device=2, threads=1, progress=False)
    serial = sweep.run_all(configs(tmp_path / "s"), workers=1, threads=1, progress=False)
    for a, b in zip(packed, serial):
        assert [h["test_accuracy"] for h in a["history"]] == [h["test_accuracy"] for h in b["history"]]


def test_devices_that_are_not_here_are_refused_in_one_line(tmp_path):
    out = gdw("sweep", "--profile", "smoke", "--devices", "cuda:0,cuda:7", "--results-dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: --devices names cuda:")
    assert not (tmp_path / "runs").exists()


def test_the_paper_profile_is_checked_not_trained_by_make_book(tmp_path):
    """`make book PROFILE=paper` stops at once with the missing runs and the sweep command."""
    out = subprocess.run(["make", "experiments", "PROFILE=paper", f"RESULTS={tmp_path}"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode != 0
    assert "710 run(s) of the 'paper' profile have no result" in out.stderr
    assert "GDW          cifar100 uniform 60%, no constraint: seeds 1, 2, 3, 4, 5" in out.stderr
    assert f"python -m gdwlib sweep --profile paper --results-dir {tmp_path}" in out.stderr
    assert "papermill" not in out.stdout and not (tmp_path / "runs").exists()


def test_dry_run_counts_the_grid_and_prices_it_from_a_stored_benchmark(tmp_path):
    """Table 2 of the paper: 10 methods x 2 data sets x 3 ratios x 5 seeds. At 10 ms an iteration,
    a run of 80 epochs over 49,000 images in batches of 100 (80 * 490 iterations) takes
    392 s; Fine-tuning's 10 passes over the 1,000 meta images take 1 s. So Table 2 costs
    (270 * 392 + 30 * 1) / 3600 = 29.4 hours."""
    from gdwlib.methods import METHODS

    cost = tmp_path / "bench.json"
    cost.write_text(json.dumps({"machine": {"type": "cuda", "name": "Some GPU", "torch": "x", "date": "2026-01-01"},
                                "shapes": {"cifar": {"variants": {m: {"ms_median": 10.0} for m in METHODS}}}}))
    out = gdw("sweep", "--profile", "paper", "--dry-run", "--cost", str(cost), "--results-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:7]}
    assert rows["table2"][1:3] == ["300", "300"] and rows["table2"][-1] == "29.4"
    assert rows["table3"][1:3] == ["300", "200"]   # the clean column is Table 2's
    assert out.stdout.splitlines()[0].endswith("GPU-hours to train")
    assert f"read from the stored benchmark result {cost}: cuda (Some GPU" in out.stdout


def test_a_run_stopped_before_its_first_checkpoint_counts_as_interrupted_and_resumes(tmp_path, monkeypatch):
    """Ctrl-C before the first epoch ended leaves a run directory that holds only its lock: --status
    counts it as interrupted, and the next sweep trains it."""
    from gdwlib.experiments import table_cells

    configs = [c.config for c in table_cells("table2", "smoke", methods=["BaseModel"], device="cpu",
                                             results_dir=str(tmp_path))]
    stopped = configs[0]
    monkeypatch.setattr(train, "evaluate", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train.run(stopped, progress=False)
    monkeypatch.undo()
    assert [p.name for p in train.run_directory(stopped).iterdir()] == [".lock"]
    out = gdw("sweep", "--profile", "smoke", "--tables", "table2", "--methods", "BaseModel", "--device", "cpu",
              "--results-dir", str(tmp_path), "--status")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert rows[-1].startswith("all (each run once) ")
    counts = dict(zip(header.split()[1:], map(int, rows[-1].split()[4:])))
    assert counts["runs"] == len(configs) == 3 and counts["interrupted"] == 1 and counts["pending"] == 2, out.stdout
    (result,) = sweep.run_all([stopped], workers=1, progress=False)
    assert result["history"] and result["resumed_after_epochs"] == []   # no checkpoint: trained from the start
    assert sweep.status([stopped], str(tmp_path))[stopped] == ("done", None)
