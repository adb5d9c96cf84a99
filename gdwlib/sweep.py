"""Many runs at once: independent runs in parallel worker processes, finished runs skipped,
runs that others start from (Fine-tuning's BaseModel) trained first.

Ctrl-C stops a sweep within seconds: queued runs are not started, running ones stop where they
are (each keeps its checkpoint after its last finished epoch), and running the same command again
resumes. A terminal sends SIGINT to the whole process group; a worker that receives it stops its
run and starts no other, and the sweep forwards the signal to its workers in case it came to the
sweep alone (``kill -INT``).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Iterable

import torch
from tqdm import tqdm

from .config import RunConfig
from .methods import NonFiniteLossError, get_method
from .results import UnreadableFileError, read_json, write_json
from .train import find_result, run, run_directory


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; what finished is kept and a rerun resumes."""


def _unique(configs: Iterable[RunConfig]) -> list[RunConfig]:
    seen, out = set(), []
    for c in configs:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def _waves(configs: list[RunConfig]) -> list[list[RunConfig]]:
    """The runs to train in order: the runs others start from (and have no result yet) first."""
    levels, current = [], configs
    while current:
        levels.append(current)
        current = _unique(r for c in current for r in get_method(c.method).requirements(c) if pending(r))
    waves, done = [], set()
    for level in reversed(levels):
        wave = [c for c in level if c not in done]
        done.update(wave)
        waves.append(wave)
    return [w for w in waves if w]


_stopping = False   # in a worker: a SIGINT arrived, start no further run


def _on_sigint(signum, frame) -> None:
    global _stopping
    if not _stopping:  # the first one stops the run; a forwarded second one must not hit the worker's own loop
        _stopping = True
        raise KeyboardInterrupt


def _init_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, _on_sigint)
    torch.set_num_threads(threads)


def failure(config: RunConfig) -> dict | None:
    """The record of a run that diverged, if there is a readable one."""
    path = run_directory(config) / "failure.json"
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except UnreadableFileError as e:
        warnings.warn(f"{e}; the run counts as not tried (delete the file to silence this)", stacklevel=2)
        return None
    return record if isinstance(record, dict) else None


def _train(config: RunConfig) -> None:
    """One run of a sweep. A run that diverges is recorded (``failure.json``) instead of stopping
    the sweep; the tables show it as diverged, and later sweeps do not retry it."""
    if _stopping:
        return
    try:
        run(config, progress=False)
    except NonFiniteLossError as e:
        write_json(run_directory(config) / "failure.json", {"config": config.to_dict(), "message": str(e)})


def pending(config: RunConfig) -> bool:
    return find_result(config) is None and failure(config) is None


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the pool now: drop queued runs, interrupt running ones (their checkpoints stay)."""
    for process in list(getattr(pool, "_processes", {}).values()):  # the executor offers no public handle
        try:
            os.kill(process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def run_all(configs: Iterable[RunConfig], *, workers: int = 2, threads: int | None = None,
            progress: bool = True) -> list[dict]:
    """The results of ``configs`` (in order; None for a run that diverged), training those that
    have none yet.

    ``workers`` processes train independent runs side by side, each with ``threads`` torch
    threads (default: the cores divided among the workers). Raises :class:`SweepInterrupted`
    on Ctrl-C, with a message that says how far it got.
    """
    configs = list(configs)
    waves = _waves([c for c in _unique(configs) if pending(c)])
    threads = threads or max(1, (os.cpu_count() or 1) // max(workers, 1))
    total = sum(len(w) for w in waves)
    bar = tqdm(total=total, disable=not progress or not total, desc="runs", unit="run")
    try:
        for wave in waves:
            if workers <= 1:
                torch.set_num_threads(threads)
                for c in wave:
                    _train(c)
                    bar.update(1)
                continue
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(threads,))
            try:
                waiting = {pool.submit(_train, c) for c in wave}
                while waiting:
                    finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                    for future in finished:
                        future.result()
                        bar.update(1)
            except BaseException:
                _stop(pool)
                raise
            pool.shutdown()
    except KeyboardInterrupt:
        bar.close()
        raise SweepInterrupted(f"interrupted: {bar.n} of the {total} runs to train finished; the others were "
                               "stopped or not started (a stopped run keeps its last epoch checkpoint). Run the "
                               "same command again to resume.") from None
    bar.close()
    return [find_result(c) for c in configs]
