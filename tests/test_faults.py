"""Faults a hostile but fair user meets, each reproduced for real: Ctrl-C to a sweep's process
group, diverging runs, wrong data directories, damaged checkpoints and results, bad --set values,
a full or read-only results disk (a real small tmpfs), re-pickled CIFAR files, a damaged .gz."""
import gzip
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gdwlib import cli, train  # noqa: E402
from gdwlib.data.build import build_data  # noqa: E402
from gdwlib.data.cifar import UnsafePickleError, load_cifar  # noqa: E402
from gdwlib.data.fashion_mnist import fashion_mnist_files  # noqa: E402
from gdwlib.data.idx import CorruptFileError, read_idx, write_idx  # noqa: E402
from gdwlib.data.longtail import longtail_counts  # noqa: E402
from gdwlib.figures import save  # noqa: E402
from gdwlib.methods import METHODS, NonFiniteLossError  # noqa: E402
from gdwlib.profiles import profile_config  # noqa: E402
from gdwlib.results import ResultsWriteError, read_json, write_json  # noqa: E402
from gdwlib.sweep import failure, run_all  # noqa: E402

from conftest import assert_same_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def as_from_a_terminal():
    """In the child, before it runs: Ctrl-C as a terminal's foreground job takes it. A test run
    started in the background (``make test &``) has SIGINT ignored, and a child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def smoke(tmp_path, **fields):
    return profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", **fields)


def results_in(directory: Path) -> int:
    return len(list((directory / "runs").glob("*/result.json")))


def live_members(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies waiting to be reaped do not count)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


# ----- 1. Ctrl-C stops a sweep ----------------------------------------------------------------

def test_ctrl_c_stops_a_sweep_within_seconds_and_says_how_to_resume(tmp_path):
    """SIGINT to the process group of a real two-worker sweep (as a terminal's Ctrl-C sends it)."""
    sweep = subprocess.Popen([sys.executable, "-m", "gdwlib", "sweep", "--profile", "smoke", "--workers", "2",
                              "--results-dir", str(tmp_path)], env=ENV, start_new_session=True,
                             preexec_fn=as_from_a_terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while results_in(tmp_path) < 4 and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.1)
    assert sweep.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(sweep.pid, signal.SIGINT)
    stopped_at = time.time()
    _, err = sweep.communicate(timeout=60)
    assert time.time() - stopped_at < 15
    assert sweep.returncode == 130
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and "Run the same command again to resume" in last
    finished = results_in(tmp_path)
    time.sleep(3)
    assert results_in(tmp_path) == finished < 71  # nothing trains on, most runs never started
    assert live_members(sweep.pid) == []


def loading_torch(pid: int) -> bool:
    """Whether ``pid`` has begun to load torch's libraries (it takes seconds on a loaded machine)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def worker_loading_torch(pgid: int) -> bool:
    """Whether a spawned worker of the sweep has begun to load torch."""
    for pid in live_members(pgid):
        try:
            worker = b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if worker and loading_torch(pid):
            return True
    return False


@pytest.mark.parametrize("backend, moment", [
    (["--workers", "1"], "loading"), (["--workers", "1"], "training"),
    (["--workers", "2"], "loading"), (["--workers", "2"], "workers starting"),
    (["--devices", "cpu,cpu", "--runs-per-device", "1"], "workers starting"),
    (["--devices", "cpu,cpu", "--runs-per-device", "1"], "training"),
], ids=lambda v: v if isinstance(v, str) else "-".join(v[:2]))
def test_ctrl_c_at_any_moment_gives_one_line_and_no_traceback(tmp_path, backend, moment):
    """Ctrl-C to the process group while the sweep loads torch, while its spawned workers start
    (they import torch), and while runs train: one line, exit 130, nothing left running."""
    sweep = subprocess.Popen([sys.executable, "-m", "gdwlib", "sweep", "--profile", "smoke", *backend,
                              "--results-dir", str(tmp_path)], env=ENV, start_new_session=True,
                             preexec_fn=as_from_a_terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reached = {"loading": lambda: loading_torch(sweep.pid), "workers starting": lambda: worker_loading_torch(sweep.pid),
               "training": lambda: any((tmp_path / "runs").glob("*/checkpoint.pt"))}[moment]
    deadline = time.time() + 120
    while not reached() and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.01)
    assert sweep.poll() is None and reached(), f"the sweep never reached the moment: {moment}"
    os.killpg(sweep.pid, signal.SIGINT)
    _, err = sweep.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "terminate called" not in err, err
    assert sweep.returncode == 130, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err
    assert lines[0].startswith("interrupted") and "Run the same command again" in lines[0]
    deadline = time.time() + 10   # the resource tracker ends after the sweep, once it sees the sweep gone
    while live_members(sweep.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert live_members(sweep.pid) == []


# ----- 2. divergence ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_methods_divergence_is_reported_with_epoch_and_iteration(tmp_path, method):
    # Fine-tuning has its own rate: a healthy BaseModel to start from, then a diverging fine-tuning
    fields = {"options": {"lr": 1e6}} if method == "Fine-tuning" else {"lr": 1e6}
    config = smoke(tmp_path, method=method, **fields)
    with pytest.raises(NonFiniteLossError, match=r"at epoch \d+, iteration \d+; .*Lower the learning rate"):
        train.run(config, progress=False)


def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    diverging, healthy = smoke(tmp_path, method="GDW", lr=1e6), smoke(tmp_path, method="BaseModel")
    results = run_all([diverging, healthy], workers=1, progress=False)
    assert results[0] is None and results[1]["final_accuracy"] > 20
    record = failure(diverging)
    assert "GDW: " in record["message"] and "at epoch 1, iteration" in record["message"]
    assert run_all([diverging, healthy], workers=1, progress=False)[1] == results[1]  # a rerun does not crash


# ----- 3. an explicit data directory is used or refused -----------------------------------------

def test_a_wrong_explicit_data_directory_is_refused_not_replaced(tmp_path, monkeypatch):
    monkeypatch.delenv("GDW_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"--data-dir .*missing is not a directory"):
        build_data(smoke(tmp_path, data_dir=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--data-dir .*empty holds no train-images-idx3-ubyte"):
        build_data(smoke(tmp_path, data_dir=str(tmp_path / "empty")))
    monkeypatch.setenv("GDW_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"GDW_DATA .*empty holds no train-images-idx3-ubyte"):
        build_data(smoke(tmp_path))


def test_the_result_records_the_files_really_read(tmp_path, monkeypatch):
    monkeypatch.delenv("GDW_DATA", raising=False)
    copy = tmp_path / "copy"
    copy.mkdir()
    for split in ("train", "test"):
        for f in fashion_mnist_files(split):
            shutil.copy(f, copy / f.name)
    result = train.run(smoke(tmp_path, method="BaseModel", epochs=1, data_dir=str(copy)), progress=False)
    assert sorted(result["data"]["files"]) == sorted(str(p) for p in copy.iterdir())


# ----- 4. damaged checkpoints and results -------------------------------------------------------

def interrupted_checkpoint(tmp_path, config) -> Path:
    """A real checkpoint after epoch 1 of ``config`` (the run is stopped in its second evaluation)."""
    real, calls = train.evaluate, {"n": 0}

    def stop(model, batches):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(model, batches)

    train.evaluate = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train.run(config, progress=False)
    finally:
        train.evaluate = real
    return train.run_directory(config) / "checkpoint.pt"


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "foreign", "other method's"])
def test_an_unreadable_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path, capsys, damage):
    config = smoke(tmp_path / "b", method="GDW", epochs=3)
    ckpt = interrupted_checkpoint(tmp_path, config)
    raw = ckpt.read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "garbage":
        ckpt.write_bytes(os.urandom(1000))
    elif damage == "foreign":
        torch.save({"weights": torch.ones(3)}, ckpt)
    else:  # a BaseModel checkpoint where GDW's (with its weighting network) belongs
        base = smoke(tmp_path / "base", method="BaseModel", epochs=3)
        shutil.copy(interrupted_checkpoint(tmp_path, base), ckpt)
    capsys.readouterr()
    train.run(config, progress=False)
    err = capsys.readouterr().err
    assert f"warning: {ckpt} cannot be read (" in err and "training" in err and "from scratch" in err
    assert len(list(ckpt.parent.glob("checkpoint.pt.unreadable-*"))) == 1
    clean = smoke(tmp_path / "a", method="GDW", epochs=3)
    train.run(clean, progress=False)
    assert_same_run(clean, config)  # from scratch: the same numbers as a run never interrupted


@pytest.mark.parametrize("damage", ["garbage", "hand-edited accuracy", "another run's", "fields missing", "NaN"])
def test_an_invalid_result_does_not_count_and_is_trained_again(tmp_path, capsys, damage):
    config = smoke(tmp_path, method="BaseModel")
    good = train.run(config, progress=False)
    path = train.run_directory(config) / "result.json"
    if damage == "garbage":
        path.write_bytes(b'{"final_accuracy": "\x01 garbage')
    elif damage == "hand-edited accuracy":
        write_json(path, {**good, "final_accuracy": 99.0})
    elif damage == "another run's":
        write_json(path, {**good, "config": {**good["config"], "seed": 2}})
    elif damage == "fields missing":
        write_json(path, {"final_accuracy": 50.0})
    else:
        path.write_text(path.read_text().replace(f'"final_accuracy": {good["final_accuracy"]}', '"final_accuracy": NaN'))
    with pytest.warns(UserWarning, match=f"{path}: .*does not count as finished"):
        assert train.find_result(config) is None
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = train.run(config, progress=False)
    assert f"warning: {path}: " in capsys.readouterr().err
    assert again["history"] == [{**h, "seconds": again["history"][i]["seconds"]} for i, h in enumerate(good["history"])]
    assert len(list(path.parent.glob("result.json.invalid-*"))) == 1
    assert read_json(path)["final_accuracy"] == good["final_accuracy"]


def test_a_garbage_failure_record_does_not_stop_a_sweep(tmp_path):
    config = smoke(tmp_path, method="BaseModel")
    directory = train.run_directory(config)
    directory.mkdir(parents=True)
    (directory / "failure.json").write_bytes(b"\x00\x01 not json")
    with pytest.warns(UserWarning, match="failure.json: not valid JSON"):
        (result,) = run_all([config], workers=1, progress=False)
    assert result["final_accuracy"] > 20


# ----- 5 and 6. bad settings are refused before anything runs -----------------------------------

@pytest.mark.parametrize("setting, message", [
    ("train_size=0", "train_size must leave at least one training image per class"),
    ("foo=1", "unknown config field(s) ['foo']"),
    ("lr=abc", "lr must be a number, got 'abc' (str)"),
    ("epochs=1.5", "epochs must be an integer, got 1.5 (float)"),
    ('batch_size="50"', "batch_size must be an integer, got '50' (str)"),
    ("constraint=1", "constraint must be true or false, got 1 (int)"),
    ("option.gamma=abc", "Focal's option gamma must be like its default 1.0, got 'abc' (str)"),
    ("option.nope=1", "Focal has no option(s) ['nope']"),
])
def test_bad_settings_are_refused_in_one_line_before_anything_runs(tmp_path, capsys, monkeypatch, setting, message):
    monkeypatch.setattr(train, "build_data", lambda *a: pytest.fail("data was loaded"))
    code = cli.main(["run", "--method", "Focal", "--profile", "smoke", "--results-dir", str(tmp_path),
                     "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {message}" + err[len(f"error: {message}"):] and message in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_long_tail_never_empties_a_class():
    # 40 * 0.01 ** (i / 9) = 40, 23.98, 14.37, 8.62, 5.17, 3.09, 1.86, 1.11, 0.67, 0.40
    assert longtail_counts(40, 10, 0.01) == [40, 23, 14, 8, 5, 3, 1, 1, 1, 1]


def test_a_training_set_without_some_class_is_refused(tmp_path, monkeypatch):
    """Fashion-MNIST files that hold no image of class 9: refused before a run directory exists."""
    monkeypatch.delenv("GDW_DATA", raising=False)
    rng = np.random.default_rng(0)
    (tmp_path / "d").mkdir()
    for split, n in (("train", 300), ("t10k", 50)):
        write_idx(tmp_path / "d" / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / "d" / f"{split}-labels-idx1-ubyte", (np.arange(n) % 9).astype(np.uint8))
    config = smoke(tmp_path, method="BaseModel", data_dir=str(tmp_path / "d"), train_size=200, meta_per_class=2)
    with pytest.raises(ValueError, match=r"no image of class\(es\) \[9\]"):
        train.run(config, progress=False)
    assert not (tmp_path / "runs").exists()


def test_paper_sweep_without_a_gpu_stops_at_once_and_leaves_nothing(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli.main(["sweep", "--profile", "paper", "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the 'paper' profile") and "needs a GPU" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_missing_data_leaves_no_empty_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("GDW_DATA", raising=False)
    with pytest.raises(FileNotFoundError):
        train.run(smoke(tmp_path, data_dir=str(tmp_path / "nowhere")), progress=False)
    assert not (tmp_path / "runs").exists()


# ----- 7. full and read-only results disks (a real tmpfs) ----------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    mounted = []

    def mount(size: str, readonly: bool = False) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_is_found_before_training_and_named_in_one_line(tmpfs, capsys, monkeypatch):
    results = tmpfs("256k")
    monkeypatch.setattr(METHODS["BaseModel"], "train_step", lambda *a: pytest.fail("trained on a full disk"))
    assert cli.main(["run", "--method", "BaseModel", "--profile", "smoke", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot write to {results}: the disk is full. Free some space or " \
                          "choose another directory (--results-dir); files written before are kept"


def test_too_little_room_for_a_checkpoint_is_found_before_training(tmpfs, capsys, monkeypatch):
    results = tmpfs("1200k")  # room for the 1 MiB write check, not for two checkpoints of the smoke MLP (1.1 MB)
    monkeypatch.setattr(METHODS["MWNet"], "train_step", lambda *a: pytest.fail("trained without room for a checkpoint"))
    assert cli.main(["run", "--method", "MWNet", "--profile", "smoke", "--results-dir", str(results)]) == 2
    assert "the disk is full" in capsys.readouterr().err


def test_a_disk_that_fills_during_the_run_gives_one_line_and_loses_nothing(tmpfs, capsys, monkeypatch):
    """The checks before training pass (they are switched off here), the first checkpoint fails."""
    results = tmpfs("1200k")
    monkeypatch.setattr(train, "check_writable", lambda *a, **k: None)
    code = cli.main(["run", "--method", "MWNet", "--profile", "smoke", "--results-dir", str(results), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "the disk is full" in err
    assert not list(results.rglob("*.tmp"))  # no half-written file left behind


def test_a_read_only_results_directory_is_named(tmpfs, capsys):
    results = tmpfs("1m", readonly=True)
    assert cli.main(["run", "--profile", "smoke", "--results-dir", str(results)]) == 2
    assert "it is on a read-only file system" in capsys.readouterr().err


# ----- 8, 9. data files ------------------------------------------------------------------------

def test_cifar_files_re_pickled_by_python3_load(tmp_path):
    """Python 3's C pickler writes bytes through ``_codecs.encode`` in protocol 2: still a plain batch."""
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    rng = np.random.default_rng(0)
    data, labels = rng.integers(0, 256, (4, 3072), dtype=np.uint8), [3, 1, 4, 1]
    for name in ["test_batch"]:
        raw = pickle.dumps({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
                            b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}, protocol=2)
        assert b"_codecs" in raw
        (directory / name).write_bytes(raw)
    images, got = load_cifar("cifar10", "test", tmp_path)
    assert got.tolist() == labels
    assert np.array_equal(images, data.reshape(4, 3, 32, 32).transpose(0, 2, 3, 1))


def test_codecs_encode_is_allowed_only_for_latin1_text(tmp_path):
    import _codecs

    class Rot13:
        def __reduce__(self):
            return _codecs.encode, ("abc", "rot13")

    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Rot13()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"test_batch: the file called `_codecs.encode` with str and codec"):
        load_cifar("cifar10", "test", tmp_path)


def test_a_gz_idx_file_with_a_damaged_deflate_stream_is_refused_in_one_line(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    start = raw.index(0, 10) + 1 if raw[3] & 0x08 else 10  # the deflate stream starts after the file name
    raw[start] = 0xFF  # a block of type 3, which deflate does not have
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception) as plain:
        gzip.decompress(bytes(raw))
    assert type(plain.value).__module__ == "zlib"  # what escaped before
    with pytest.raises(CorruptFileError, match=r"t10k-images-idx3-ubyte.gz: cannot be read as gzip"):
        read_idx(path)


# ----- 10. leftovers of a killed write, the directory fsync, figures ------------------------------

def test_an_orphan_temporary_file_is_removed_by_the_next_run(tmp_path):
    config = smoke(tmp_path, method="BaseModel", epochs=1)
    directory = train.run_directory(config)
    directory.mkdir(parents=True)
    orphan = directory / ".checkpoint.pt.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    train.run(config, progress=False)
    assert not orphan.exists()


def test_the_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    from gdwlib import results

    synced = []
    real = os.fsync

    def record(fd):
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(results.os, "fsync", record)
    write_json(tmp_path / "r.json", {"a": 1})
    assert synced == [False, True]  # the file's data, then its directory entry


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    fig = plt.figure()
    plt.plot([0, 1])
    save(fig, tmp_path, "figure3")
    before = (tmp_path / "figure3.png").read_bytes()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(ResultsWriteError, match="the disk is full"):
        save(fig, tmp_path, "figure3")
    plt.close(fig)
    assert (tmp_path / "figure3.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure3.png"]
