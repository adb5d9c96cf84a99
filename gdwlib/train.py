"""One run, from a config to a result file: data, method, epochs, evaluation, checkpoints.

``run(config)`` trains with a progress bar, evaluates on the test set after every epoch and
writes ``results/runs/<run id>/result.json`` (config, code version, device, per-epoch history,
final accuracy, wall time). A checkpoint is written atomically after every epoch; running the
same config again resumes from it, and a finished run is never retrained: its result is read
back. Each epoch's batches and random draws are seeded from ``(seed, epoch)``, so a resumed run
computes exactly what an uninterrupted one would have.
"""
from __future__ import annotations

import fcntl
import itertools
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ._checks import NumericalError, deferred_checks
from .config import RunConfig, identity, run_id
from .data.batches import stream_seed
from .data.build import build_data
from .methods import NonFiniteLossError, check_options, get_method
from .results import (UnreadableFileError, check_writable, code_version, device_info, read_json, save_npz, save_torch,
                      serialized, write_json)
from .stats import WeightStats


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else the CPU."""
    device = torch.device(device_type(name) if name == "auto" else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return device


def device_type(name: str) -> str:
    """The type ('cpu' or 'cuda') a run on device ``name`` has, whether or not that device is
    here (a login node without a GPU names the runs its GPU jobs make)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name).type


def run_directory(config: RunConfig, device: torch.device | None = None) -> Path:
    """Where the run of ``config`` keeps its checkpoint and result (named by :func:`run_id`)."""
    kind = device.type if device is not None else device_type(config.device)
    method = get_method(config.method)
    return Path(config.results_dir) / "runs" / run_id(config, kind, method.options, method.revision)


def result_problem(result, config: RunConfig) -> str | None:
    """What is wrong with a result file's contents for ``config``, or None if nothing is: it must
    hold the run's own config (locations aside), a finite history of test accuracies in [0, 100]
    and a final accuracy equal to the mean of the last ``final_epochs`` of them."""
    if not isinstance(result, dict):
        return f"it holds a {type(result).__name__}, not a result"
    missing = [k for k in ("config", "history", "final_accuracy", "final_epochs", "wall_time") if k not in result]
    if missing:
        return f"fields {missing} are missing"
    try:
        if identity(RunConfig.from_dict(result["config"])) != identity(config):
            return "its config is not this run's"
    except (TypeError, ValueError) as e:
        return f"its config is not valid ({e})"
    history = result["history"]
    if not isinstance(history, list) or not history:
        return "its history is empty"
    accuracies = [h.get("test_accuracy") if isinstance(h, dict) else None for h in history]
    if not all(isinstance(a, (int, float)) and 0 <= a <= 100 for a in accuracies):
        return "its history holds test accuracies that are not numbers in [0, 100]"
    final = result["final_accuracy"]
    if not isinstance(final, (int, float)) or not math.isfinite(final) \
            or not isinstance(result["wall_time"], (int, float)) or not math.isfinite(result["wall_time"]):
        return "its final accuracy or wall time is not a finite number"
    k = result["final_epochs"]
    if not isinstance(k, int) or not 1 <= k <= len(accuracies) \
            or not math.isclose(final, float(np.mean(accuracies[-k:])), rel_tol=1e-9, abs_tol=1e-9):
        return f"its final accuracy {final} is not the mean of the last {k} test accuracies of its history"
    return None


def _checked_result(path: Path, config: RunConfig) -> tuple[dict | None, str | None]:
    """(result, None) for a valid result file, (None, what is wrong) otherwise, (None, None) if absent."""
    if not path.exists():
        return None, None
    try:
        result = read_json(path)
    except UnreadableFileError as e:
        return None, str(e)
    problem = result_problem(result, config)
    return (None, f"{path}: {problem}") if problem else (result, None)


def find_result(config: RunConfig) -> dict | None:
    """The finished result of ``config``, if there is a valid one (an invalid file is reported
    with a warning and counts as no result)."""
    result, problem = _checked_result(run_directory(config) / "result.json", config)
    if problem:
        warnings.warn(f"{problem}; it does not count as finished (training the run again moves it aside)",
                      stacklevel=2)
    return result


def move_aside(path: Path, why: str) -> Path:
    """Rename a file that cannot be used to ``<name>.<why>-<time>``, kept for inspection."""
    aside = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    return aside


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches) -> float:
    """Accuracy (%) of ``model`` in eval mode over ``batches``."""
    model.eval()
    correct, total = 0, 0
    for b in batches:
        correct = correct + (model(b.x).argmax(1) == b.y).sum()   # summed on the device, read once
        total += len(b)
    return 100.0 * int(correct) / total


def tracked_instances(labels, true_labels, count: int) -> np.ndarray:
    """The first ``count / 2`` noisy and the first clean training instances (Figure 4); true
    labels of -1 (unknown) count as neither."""
    labels, true_labels = np.asarray(torch.as_tensor(labels).cpu()), np.asarray(torch.as_tensor(true_labels).cpu())
    noisy = np.flatnonzero((true_labels >= 0) & (labels != true_labels))[:count // 2]
    clean = np.flatnonzero((true_labels >= 0) & (labels == true_labels))[:count - len(noisy)]
    return np.concatenate([noisy, clean]).astype(np.int64)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@contextmanager
def _exclusive(directory: Path):
    """Hold the run directory's lock: two processes given the same config train it once. Files
    left half-written by a killed writer (``.*.tmp``) are removed once the lock is held."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            for orphan in directory.glob(".*.tmp"):
                orphan.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_training(config: RunConfig) -> bool:
    """Whether some process on a machine that shares the results directory trains ``config`` now
    (it holds the run directory's lock)."""
    lock = run_directory(config) / ".lock"
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def failure(config: RunConfig) -> dict | None:
    """The record of a run that diverged (``failure.json``), if there is a readable one."""
    path = run_directory(config) / "failure.json"
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except UnreadableFileError as e:
        warnings.warn(f"{e}; the run counts as not tried (delete the file to silence this)", stacklevel=2)
        return None
    return record if isinstance(record, dict) else None


def settled(config: RunConfig) -> bool:
    """Whether ``config`` needs no more training: it finished or diverged."""
    return find_result(config) is not None or failure(config) is not None


def train_or_record(config: RunConfig, progress: bool = False) -> None:
    """Train ``config`` as one run of a sweep: a run that diverges is recorded (``failure.json``)
    instead of raising; the tables show it as diverged, and later sweeps do not retry it."""
    try:
        run(config, progress=progress)
    except NonFiniteLossError as e:
        write_json(run_directory(config) / "failure.json", {"config": config.to_dict(), "message": str(e)})


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped a run; its checkpoint after the last finished epoch is kept."""


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


CHECK_EVERY = 50   # iterations between reads of the deferred value checks; None checks (and syncs) every step


def _train_epoch(method, epoch: int, meta, iterations_cap: int | None, bar) -> np.ndarray:
    """One epoch of ``method.train_step`` (at most ``iterations_cap`` of them), with nothing read back
    from the device inside an iteration: the value checks are deferred and read every
    ``CHECK_EVERY`` iterations and at the end, the losses once at the end. A failed check raises
    :class:`NumericalError` with the iteration (from 1) it failed in."""
    losses, i = [], 0
    with deferred_checks() if CHECK_EVERY else nullcontext() as checks:
        try:
            for i, batch in enumerate(itertools.islice(method.batches(epoch), iterations_cap), start=1):
                if checks is not None:
                    checks.iteration = i
                losses.append(method.train_step(batch, meta))
                if checks is not None and i % CHECK_EVERY == 0:
                    checks.raise_if_failed()
                bar.update(1)
            if checks is not None:
                checks.raise_if_failed()
        except NumericalError as e:
            e.iteration = e.iteration or i
            raise
    return torch.stack(losses).double().cpu().numpy()


def run(config: RunConfig, *, progress: bool = True) -> dict:
    """Train ``config`` (or resume it, or read back its finished result) and return the result.

    Everything that can be checked is checked before the run's directory is made: the method and
    its options, the device, the data. A result file that fails its checks, or a checkpoint that
    cannot be read, is moved aside (with a warning) and the run is trained again."""
    method_cls = get_method(config.method)
    check_options(method_cls, config)
    device = resolve_device(config.device)
    directory = run_directory(config, device)
    result, _ = _checked_result(directory / "result.json", config)  # an invalid one is moved aside under the lock
    if result is not None:
        return result
    required = []
    for r in method_cls.requirements(config):  # the runs this one starts from, finished first
        find_result(r) or run(r, progress=progress)
        required.append(run_directory(r))
    if config.threads:
        torch.set_num_threads(config.threads)
    data = build_data(config, device)
    check_writable(config.results_dir)
    with _exclusive(directory):
        return _run(config, device, directory, progress, required, data)


def train_epochs(fresh, data, ckpt_path: Path, *, seed: int, name: str, desc: str, progress: bool = True,
                 iterations_cap: int | None = None) -> tuple[object, list[dict], float, list[int]]:
    """The epochs of one training, from the checkpoint at ``ckpt_path`` if it holds a readable
    one: the loop that :func:`run` and :func:`gdwlib.fitting.fit` share.

    ``fresh()`` builds the method as it stands before the first epoch (a method of the paper's
    tables, or ``fit``'s user model); ``data`` gives the meta and test batches. Each epoch is
    seeded from ``(seed, epoch)``, evaluated on the test set, and checkpointed atomically, so a
    killed training resumes with the numbers of an uninterrupted one. Returns the method, the
    per-epoch history, the training seconds and the epochs after which it resumed. ``name`` (the
    method) heads an error message, ``desc`` the progress bar."""
    method = fresh()
    check_writable(ckpt_path.parent, reserve=2 * len(serialized(method.state_dict())))   # a checkpoint, with room
    start, history, elapsed, resumed = 0, [], 0.0, []
    if ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, map_location=method.device, weights_only=True)
            method.load_state_dict(state["method"])
            if method.stats is not None:
                method.stats.load_state_dict(state["stats"])
            start, history, elapsed = state["epoch"], state["history"], state["elapsed"]
            resumed = state.get("resumed", []) + [start]
        except Exception as e:  # noqa: BLE001 - a damaged file can fail in any of torch's and pickle's ways
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}"
            _say(f"warning: {ckpt_path} cannot be read ({reason}); moved to "
                 f"{move_aside(ckpt_path, 'unreadable').name}, training {ckpt_path.parent.name} from scratch")
            method, start, history, elapsed, resumed = fresh(), 0, [], 0.0, []
    stats = method.stats

    epochs, iterations = method.num_epochs(), method.iterations_per_epoch()
    if iterations_cap:
        iterations = min(iterations, iterations_cap)
    bar = tqdm(total=epochs * iterations, initial=start * iterations, disable=not progress,
               desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)
    try:
        for epoch in range(start, epochs):
            began = time.perf_counter()
            torch.manual_seed(stream_seed(seed, epoch, "torch") % 2**63)
            lr = method.learning_rate(epoch)
            method.start_epoch(epoch, lr)
            if stats is not None:
                stats.start_epoch(epoch)
            meta = data.meta_batches(epoch) if method.uses_meta else None
            try:
                losses = _train_epoch(method, epoch, meta, iterations_cap, bar)
            except NumericalError as e:
                kept = f"the checkpoint after epoch {len(history)} is kept at {ckpt_path}" if ckpt_path.exists() \
                    else "no checkpoint was written yet"
                raise NonFiniteLossError(
                    f"{name}: {e} at epoch {epoch + 1}, iteration {e.iteration}; {kept}. "
                    "Lower the learning rate (--set lr=...) or check the data.") from e
            method.end_epoch(epoch)
            accuracy = evaluate(method.eval_model(), data.test_batches())
            entry = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)), "test_accuracy": accuracy,
                     "seconds": time.perf_counter() - began}
            if stats is not None:
                entry["increased"] = stats.end_epoch()
            history.append(entry)
            elapsed += entry["seconds"]
            bar.set_postfix(epoch=epoch + 1, loss=f"{entry['train_loss']:.3f}", acc=f"{accuracy:.2f}")
            save_torch(ckpt_path, {"epoch": epoch + 1, "history": history, "elapsed": elapsed, "resumed": resumed,
                                   "method": method.state_dict(),
                                   "stats": stats.state_dict() if stats is not None else None})
    except KeyboardInterrupt:
        bar.close()
        raise RunInterrupted(f"{ckpt_path.parent.name}: interrupted after {len(history)} finished epoch(s), kept in "
                             f"{ckpt_path}; run the same command again to resume") from None
    bar.close()
    return method, history, elapsed, resumed


def _run(config: RunConfig, device: torch.device, directory: Path, progress: bool, required: list[Path],
         data) -> dict:
    rid = directory.name
    result_path, ckpt_path = directory / "result.json", directory / "checkpoint.pt"
    result, problem = _checked_result(result_path, config)
    if result is not None:  # finished by another process while we waited for the lock
        return result
    if problem:
        _say(f"warning: {problem}; moved to {move_aside(result_path, 'invalid').name}, training {rid} again")

    def fresh():
        seed_everything(stream_seed(config.seed, 0, "init") % 2**32)
        method = get_method(config.method)(config, data, device)
        method.start_from(required)
        if method.records_weights:
            tracked = tracked_instances(data.train.labels, data.train.true_labels, config.track_instances)
            method.stats = WeightStats(len(data.train), data.num_classes, tracked, device)
        return method

    method, history, elapsed, resumed = train_epochs(fresh, data, ckpt_path, seed=config.seed, name=config.method,
                                                     desc=f"{config.method} {config.dataset}", progress=progress,
                                                     iterations_cap=config.iterations_per_epoch)
    stats = method.stats
    final = history[-config.final_epochs:]
    result = {
        "run_id": rid,
        "config": config.to_dict(),
        "code": code_version(),
        "device": device_info(device),
        "data": data.info,
        "history": history,
        "final_accuracy": float(np.mean([h["test_accuracy"] for h in final])),
        "final_epochs": len(final),
        "wall_time": elapsed,
        "resumed_after_epochs": resumed,   # where an interrupted run went on from its checkpoint
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {"model": "model.pt"},
    }
    save_torch(directory / "model.pt", method.eval_model().state_dict())
    if stats is not None:
        save_npz(directory / "weights.npz", stats.arrays())
        result["files"]["weights"] = "weights.npz"
        result["weight_stats"] = stats.summary()
    exports = method.exports()
    if exports:
        save_npz(directory / "exports.npz", exports)
        result["files"]["exports"] = "exports.npz"
    write_json(result_path, result)
    ckpt_path.unlink(missing_ok=True)
    return result
