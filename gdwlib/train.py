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
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import RunConfig, run_id
from .data.batches import stream_seed
from .data.build import build_data
from .methods import NonFiniteLossError, get_method
from .results import code_version, device_info, read_json, save_npz, save_torch, write_json
from .stats import WeightStats


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return device


def run_directory(config: RunConfig, device: torch.device | None = None) -> Path:
    """Where the run of ``config`` keeps its checkpoint and result (named by :func:`run_id`)."""
    device = device or resolve_device(config.device)
    method = get_method(config.method)
    return Path(config.results_dir) / "runs" / run_id(config, device.type, method.options, method.revision)


def find_result(config: RunConfig) -> dict | None:
    """The finished result of ``config``, if there is one."""
    path = run_directory(config) / "result.json"
    return read_json(path) if path.exists() else None


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches) -> float:
    """Accuracy (%) of ``model`` in eval mode over ``batches``."""
    model.eval()
    correct = total = 0
    for b in batches:
        correct += int((model(b.x).argmax(1) == b.y).sum())
        total += len(b)
    return 100.0 * correct / total


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
    """Hold the run directory's lock: two processes given the same config train it once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(config: RunConfig, *, progress: bool = True) -> dict:
    """Train ``config`` (or resume it, or read back its finished result) and return the result."""
    device = resolve_device(config.device)
    directory = run_directory(config, device)
    if (directory / "result.json").exists():
        return read_json(directory / "result.json")
    required = []
    for r in get_method(config.method).requirements(config):  # the runs this one starts from, finished first
        find_result(r) or run(r, progress=progress)
        required.append(run_directory(r))
    with _exclusive(directory):
        return _run(config, device, directory, progress, required)


def _run(config: RunConfig, device: torch.device, directory: Path, progress: bool, required: list[Path]) -> dict:
    rid = directory.name
    result_path, ckpt_path = directory / "result.json", directory / "checkpoint.pt"
    if result_path.exists():  # finished by another process while we waited for the lock
        return read_json(result_path)
    if config.threads:
        torch.set_num_threads(config.threads)

    seed_everything(stream_seed(config.seed, 0, "init") % 2**32)
    data = build_data(config, device)
    method = get_method(config.method)(config, data, device)
    method.start_from(required)
    stats = None
    if method.records_weights:
        tracked = tracked_instances(data.train.labels, data.train.true_labels, config.track_instances)
        stats = WeightStats(len(data.train), data.num_classes, tracked)
        method.stats = stats

    start, history, elapsed = 0, [], 0.0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        method.load_state_dict(state["method"])
        if stats is not None:
            stats.load_state_dict(state["stats"])
        start, history, elapsed = state["epoch"], state["history"], state["elapsed"]

    epochs, iterations = method.num_epochs(), method.iterations_per_epoch()
    bar = tqdm(total=epochs * iterations, initial=start * iterations, disable=not progress,
               desc=f"{config.method} {config.dataset}", unit="it", file=sys.stderr, dynamic_ncols=True)
    try:
        for epoch in range(start, epochs):
            began = time.perf_counter()
            torch.manual_seed(stream_seed(config.seed, epoch, "torch") % 2**63)
            lr = method.learning_rate(epoch)
            method.start_epoch(epoch, lr)
            if stats is not None:
                stats.start_epoch(epoch)
            meta = data.meta_batches(epoch) if method.uses_meta else None
            losses = []
            for i, batch in enumerate(method.batches(epoch)):
                try:
                    losses.append(method.train_step(batch, meta))
                except NonFiniteLossError as e:
                    kept = f"the checkpoint after epoch {len(history)} is kept at {ckpt_path}" if ckpt_path.exists() \
                        else "no checkpoint was written yet"
                    raise NonFiniteLossError(
                        f"{config.method}: {e} at epoch {epoch + 1}, iteration {i + 1}; {kept}. "
                        "Lower the learning rate (--set lr=...) or check the data.") from e
                bar.update(1)
            method.end_epoch(epoch)
            accuracy = evaluate(method.eval_model(), data.test_batches())
            entry = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)), "test_accuracy": accuracy,
                     "seconds": time.perf_counter() - began}
            if stats is not None:
                entry["increased"] = stats.end_epoch()
            history.append(entry)
            elapsed += entry["seconds"]
            bar.set_postfix(epoch=epoch + 1, loss=f"{entry['train_loss']:.3f}", acc=f"{accuracy:.2f}")
            save_torch(ckpt_path, {"epoch": epoch + 1, "history": history, "elapsed": elapsed,
                                   "method": method.state_dict(),
                                   "stats": stats.state_dict() if stats is not None else None})
    except KeyboardInterrupt:
        bar.close()
        done = len(history)
        print(f"\ninterrupted after {done} finished epoch(s); run the same command again to resume", file=sys.stderr)
        raise
    bar.close()

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
