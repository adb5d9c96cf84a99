"""Many runs at once: independent runs in parallel worker processes, finished runs skipped,
runs that others start from (Fine-tuning's BaseModel) trained first."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Iterable

import torch
from tqdm import tqdm

from .config import RunConfig
from .methods import NonFiniteLossError, get_method
from .results import read_json, write_json
from .train import find_result, run, run_directory


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


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def failure(config: RunConfig) -> dict | None:
    """The record of a run that stopped on a non-finite loss, if there is one."""
    path = run_directory(config) / "failure.json"
    return read_json(path) if path.exists() else None


def _train(config: RunConfig) -> None:
    """One run of a sweep. A run that diverges is recorded (``failure.json``) instead of stopping
    the sweep; the tables show it as diverged, and later sweeps do not retry it."""
    try:
        run(config, progress=False)
    except NonFiniteLossError as e:
        write_json(run_directory(config) / "failure.json", {"config": config.to_dict(), "message": str(e)})


def pending(config: RunConfig) -> bool:
    return find_result(config) is None and failure(config) is None


def run_all(configs: Iterable[RunConfig], *, workers: int = 2, threads: int | None = None,
            progress: bool = True) -> list[dict]:
    """The results of ``configs`` (in order; None for a run that diverged), training those that
    have none yet.

    ``workers`` processes train independent runs side by side, each with ``threads`` torch
    threads (default: the cores divided among the workers).
    """
    configs = list(configs)
    waves = _waves([c for c in _unique(configs) if pending(c)])
    threads = threads or max(1, (os.cpu_count() or 1) // max(workers, 1))
    total = sum(len(w) for w in waves)
    bar = tqdm(total=total, disable=not progress or not total, desc="runs", unit="run")
    for wave in waves:
        if workers <= 1:
            _init_worker(threads)
            for c in wave:
                _train(c)
                bar.update(1)
            continue
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(_train, c) for c in wave]
            for future in as_completed(futures):
                future.result()
                bar.update(1)
    bar.close()
    return [find_result(c) for c in configs]
