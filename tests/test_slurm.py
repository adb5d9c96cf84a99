"""The Slurm backend against a real Slurm: a one-node cluster on this machine, started by
``scripts/slurm-local.sh`` (which installs Debian's slurm-wlm and munge where they are missing).
Where it cannot start (not root, no package manager), the tests are skipped and say why, unless
GDW_REQUIRE_SLURM is set (CI), where that is a failure."""
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gdwlib import sweep, train
from gdwlib.backends import SlurmError
from gdwlib.backends.ledger import Ledger, slurm_queue
from gdwlib.backends.slurm import SlurmBackend
from gdwlib.experiments import table_cells
from gdwlib.profiles import profile_config

from conftest import assert_same_run

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
# the grid rows the CLI tests sweep: Table 2 of the smoke profile, four methods (Fine-tuning
# starts from BaseModel: two waves), three noise levels
SELECTION = ["--profile", "smoke", "--tables", "table2", "--methods", "BaseModel,Fine-tuning,GDW,MWNet",
             "--device", "cpu"]
SLURM = ["--backend", "slurm", "--partition", "debug", "--gpus", "0", "--cpus", "1"]


def gdw(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "gdwlib", *args], capture_output=True, text=True, cwd=ROOT,
                         **kwargs)
    if check and out.returncode:
        raise AssertionError(f"gdwlib {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def slurm():
    """A running Slurm: the one already up, or one started here (and stopped afterwards)."""
    up = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True).returncode == 0
    if not up:
        began = time.perf_counter()
        out = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
        if out.returncode:
            why = f"Slurm could not be started here: {(out.stderr or out.stdout).strip().splitlines()[-1]}"
            if os.environ.get("GDW_REQUIRE_SLURM"):
                pytest.fail(why)
            pytest.skip(why)
        print(f"\nslurm-local.sh start: {time.perf_counter() - began:.1f} s")
    yield
    if not up:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120)


def squeue(job: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-r", "-j", job.split("_")[0], "-o", "%i %T"], capture_output=True,
                         text=True).stdout
    states = dict(line.split() for line in out.splitlines() if line.strip())
    return states.get(job)


def wait_until(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def status_table(out: str) -> dict[str, dict[str, int]]:
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = lines[0]
    rows = {}
    for line in lines[1:]:
        if len(line) < len(header) or not line[-1].isdigit():
            break
        name = " ".join(line[:len(line) - len(header) + 1])
        rows[name] = dict(zip(header[1:], map(int, line[len(line) - len(header) + 1:])))
    return rows


def test_a_slurm_sweep_equals_the_local_one_and_is_never_submitted_twice(slurm, tmp_path):
    cluster, local = str(tmp_path / "slurm"), str(tmp_path / "local")
    began = time.perf_counter()
    first = gdw("sweep", *SELECTION, *SLURM, "--results-dir", cluster)
    submitted = int(re.search(r"submitted (\d+) run", first.stdout).group(1))
    assert submitted == 12   # 4 methods x 3 levels, one seed
    # a second sweep while the jobs wait or run submits nothing
    again = gdw("sweep", *SELECTION, *SLURM, "--results-dir", cluster)
    assert "submitted 0 run(s)" in again.stdout
    assert len(Ledger(cluster).read()) == 12

    def finished():
        rows = status_table(gdw("sweep", *SELECTION, "--results-dir", cluster, "--status").stdout)
        total = rows["all (each run once)"]
        assert total["failed"] == 0 and total["diverged"] == 0
        return total["done"] == 12
    wait_until(finished, 600, "the 12 Slurm runs")
    print(f"\n12 runs through Slurm: {time.perf_counter() - began:.1f} s")

    gdw("sweep", *SELECTION, "--workers", "1", "--threads", "1", "--results-dir", local)   # the same, locally
    configs = [c.config for c in table_cells("table2", "smoke", methods=["BaseModel", "Fine-tuning", "GDW", "MWNet"],
                                             device="cpu", results_dir=cluster)]
    assert len(configs) == 12
    for c in configs:
        assert_same_run(c, c.replace(results_dir=local))
    # and once more: nothing to submit, every run done
    last = gdw("sweep", *SELECTION, *SLURM, "--results-dir", cluster)
    assert "submitted 0 run(s)" in last.stdout
    rows = status_table(gdw("sweep", *SELECTION, "--results-dir", cluster, "--status").stdout)
    assert rows["table2"] == {"runs": 12, "new": 12, "done": 12, "diverged": 0, "running": 0, "queued": 0,
                              "failed": 0, "interrupted": 0, "pending": 0}


def test_a_requeued_job_resumes_from_its_checkpoint_with_the_same_numbers(slurm, tmp_path):
    config = profile_config("smoke", "fashion-mnist", method="GDW", seed=3, epochs=6, train_size=1500,
                            device="cpu", results_dir=str(tmp_path / "slurm"))
    backend = SlurmBackend(config.results_dir, partition="debug", gpus=0, cpus=1)
    [job] = backend.submit([[config]])
    checkpoint = train.run_directory(config) / "checkpoint.pt"
    wait_until(checkpoint.exists, 300, "the first epoch checkpoint")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)      # what Slurm sends before preemption
    wait_until(lambda: squeue(job) in ("PENDING", "REQUEUED"), 60, "the job to be requeued", every=0.2)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)  # skip the hold
    result = wait_until(lambda: train.find_result(config), 300, "the requeued run to finish")
    assert result["resumed_after_epochs"] and 1 <= result["resumed_after_epochs"][0] < 6, result["resumed_after_epochs"]
    log = Path(Ledger(config.results_dir).last_job()[result["run_id"]]["stderr"]).read_text()
    assert "requeue" in log.lower()

    uninterrupted = config.replace(results_dir=str(tmp_path / "local"), threads=1)
    threads = torch.get_num_threads()
    try:
        train.run(uninterrupted, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert not train.find_result(uninterrupted)["resumed_after_epochs"]
    assert_same_run(config, uninterrupted)


def test_a_job_that_fails_keeps_its_log_and_status_shows_it(slurm, tmp_path):
    """A task that raises (here: its data directory is gone by the time it runs) is 'failed', and
    its log, named by the status, holds the error."""
    config = profile_config("smoke", "fashion-mnist", method="BaseModel", device="cpu",
                            data_dir=str(tmp_path / "gone"), results_dir=str(tmp_path / "results"))
    backend = SlurmBackend(config.results_dir, partition="debug", gpus=0, cpus=1)
    [job] = backend.submit([[config]])
    wait_until(lambda: squeue(job) is None, 120, "the job to end")
    [(state, log)] = sweep.status([config], config.results_dir).values()
    assert state == "failed" and "FileNotFoundError" in Path(log).read_text()


# the tasks of these tests wait in their setup line (two run, the others queue), train nothing, and are cancelled
WAITING = ["--setup", "sleep 600"]


def cancel_new(before: set[str]) -> None:
    """Cancel every job that Slurm lists now and did not list in ``before``."""
    jobs = sorted({job.split("_")[0] for job in set(slurm_queue()) - before})
    if jobs:
        subprocess.run(["scancel", *jobs], check=True)


def sweep_once_both_have_chosen(barrier, argv: list[str]) -> None:
    """One of two sweeps started together: it chooses its runs, waits until the other has chosen
    too, and only then submits, so that both pass the filter before the ledger's lock."""
    from gdwlib import cli

    submit = SlurmBackend.submit

    def after_the_other_chose(self, waves):
        barrier.wait(timeout=120)
        return submit(self, waves)

    SlurmBackend.submit = after_the_other_chose
    sys.exit(cli.main(argv))


def test_two_sweeps_started_together_submit_each_run_once(slurm, tmp_path):
    results = str(tmp_path / "results")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    argv = ["sweep", *SELECTION, *SLURM, *WAITING, "--results-dir", results]
    sweeps = [context.Process(target=sweep_once_both_have_chosen, args=(barrier, argv)) for _ in range(2)]
    before = set(slurm_queue())
    try:
        for s in sweeps:
            s.start()
        for s in sweeps:
            s.join(180)
        assert [s.exitcode for s in sweeps] == [0, 0]
        ledger = Ledger(results).read()
        runs = [e["run_id"] for e in ledger.values()]
        assert len(runs) == len(set(runs)) == 12
        assert set(slurm_queue()) - before == set(ledger)   # and no task that the ledger does not know of
        # submit again, straight to the backend (no filter before the lock), once some tasks run
        wait_until(lambda: "running" in Ledger(results).active().values(), 60, "a task to start")
        configs = [c.config for c in table_cells("table2", "smoke", methods=SELECTION[5].split(","), device="cpu",
                                                 results_dir=results)]
        backend = SlurmBackend(results, partition="debug", gpus=0, cpus=1, setup=WAITING[1:])
        assert backend.submit([configs]) == []
        assert Ledger(results).read() == ledger
    finally:
        cancel_new(before)


def test_a_cluster_without_gpus_says_what_to_do_and_cpu_profiles_ask_for_none(slurm, tmp_path):
    results = str(tmp_path / "results")
    out = gdw("sweep", *SELECTION, *SLURM[:4], "--gpus", "1", "--cpus", "1", "--results-dir", results, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: sbatch refused the job array: sbatch: error: Invalid generic resource (gres) "
                                  "specification: partition 'debug' offers no GPUs through gres (Slurm's generic "
                                  "resources), and each run asks for 1; pass --gpus 0 to run on CPU nodes, or name a "
                                  "GPU partition with --partition")
    assert not Ledger(results).read()
    before = set(slurm_queue())
    try:   # the smoke profile without --gpus asks for none: the cluster takes its tasks
        out = gdw("sweep", *SELECTION, *SLURM[:4], "--cpus", "1", *WAITING, "--results-dir", results)
        assert "submitted 12 run(s)" in out.stdout
    finally:
        cancel_new(before)


def test_bad_slurm_input_gets_one_line(slurm, tmp_path):
    out = gdw("sweep", *SELECTION, *SLURM[:2], "--partition", "nosuch", "--results-dir", str(tmp_path), check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "error: Slurm has no partition 'nosuch'; it has debug"
    (tmp_path / "file").write_text("")   # a logs folder that cannot be made (root writes anywhere else)
    out = gdw("sweep", *SELECTION, *SLURM, "--logs", str(tmp_path / "file" / "logs"), "--results-dir", str(tmp_path),
              check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"error: the logs folder {tmp_path / 'file' / 'logs'} cannot take files (Not a "
                                  "directory); choose another with --logs, on a file system the compute nodes share")


def test_without_slurm_the_slurm_backend_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))   # the venv's tools, no Slurm
    out = gdw("sweep", *SELECTION, *SLURM, "--results-dir", str(tmp_path), check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: no Slurm here: sbatch is not on PATH")
    with pytest.raises(SlurmError, match="no Slurm here"):
        SlurmBackend(str(tmp_path))


def test_time_limits_in_slurm_forms():
    from gdwlib.backends.slurm import minutes

    assert [minutes(t) for t in ("90", "12:00:00", "1-00:00:00", "2-06", "00:30:01", "45:30")] == \
        [90, 720, 1440, 3240, 31, 46]
    with pytest.raises(ValueError, match="--time takes a Slurm time limit"):
        minutes("12h")
