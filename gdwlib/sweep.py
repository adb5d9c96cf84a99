"""Many runs: what a grid of runs needs, where each run stands, and handing the missing ones to a
backend (:mod:`gdwlib.backends`: this machine's CPU or GPUs, or a Slurm cluster).

A run is *done* when its ``result.json`` is valid, *diverged* when it has a ``failure.json``,
*running* while a process holds its run directory's lock or Slurm runs its task, *queued* while
its Slurm task waits, *failed* when its last Slurm task ran and ended without either file (its
log says why), *interrupted* when it started otherwise and stopped unfinished (its run directory
holds the lock file that training makes first, and the checkpoint after its last finished epoch if
there was one), and *pending* otherwise (a task cancelled before it started leaves no log). Only
pending, interrupted and failed runs are ever started (an interrupted one resumes), and the runs
that others start from (Fine-tuning's BaseModel) come first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .backends import Backend
from .backends.local import LocalBackend
from .config import RunConfig
from .methods import get_method
from .train import failure, find_result, is_training, run_directory, settled

STATES = ("done", "diverged", "running", "queued", "failed", "interrupted", "pending")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; what finished is kept and a rerun resumes."""


def _unique(configs: Iterable[RunConfig]) -> list[RunConfig]:
    return list(dict.fromkeys(configs))


def pending(config: RunConfig) -> bool:
    return not settled(config)


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


def state(config: RunConfig, active: dict[str, str], last_jobs: dict[str, dict] | None = None) -> str:
    """One of :data:`STATES` for ``config``; ``active`` and ``last_jobs`` come from the Slurm
    ledger (empty where there is none)."""
    if find_result(config) is not None:
        return "done"
    if failure(config) is not None:
        return "diverged"
    rid = run_directory(config).name
    if is_training(config):
        return "running"
    if rid in active:
        return active[rid]
    job = (last_jobs or {}).get(rid)
    if job and Path(job["stderr"]).exists():
        return "failed"
    return "interrupted" if (run_directory(config) / ".lock").exists() else "pending"


def slurm_ledger(results_dir: str):
    """The Slurm ledger of ``results_dir`` (``(active, last_jobs)``), or empty ones where there is
    none. Raises where there is a ledger but Slurm cannot be asked (its jobs' states are unknown)."""
    from .backends.ledger import Ledger

    ledger = Ledger(results_dir)
    return (ledger.active(), ledger.last_job()) if ledger.exists() else ({}, {})


def status(configs: Iterable[RunConfig], results_dir: str) -> dict[RunConfig, tuple[str, str | None]]:
    """Each run's state (one of :data:`STATES`), with the log file of a failed one."""
    active, last_jobs = slurm_ledger(results_dir)
    out = {}
    for c in _unique(configs):
        s = state(c, active, last_jobs)
        out[c] = (s, last_jobs[run_directory(c).name]["stderr"] if s == "failed" else None)
    return out


def to_start(configs: Iterable[RunConfig], results_dir: str) -> list[list[RunConfig]]:
    """The waves of runs to start: not done, diverged, queued or running."""
    active, _ = slurm_ledger(results_dir)
    waiting = [c for c in _unique(configs)
               if pending(c) and run_directory(c).name not in active and not is_training(c)]
    return _waves(waiting)


def submit(configs: Iterable[RunConfig], backend: Backend, results_dir: str) -> list[str]:
    """Hand every run of ``configs`` that needs it to ``backend``; returns its handles (job ids)."""
    return backend.submit(to_start(configs, results_dir))


def run_all(configs: Iterable[RunConfig], *, workers: int = 2, threads: int | None = None,
            progress: bool = True, devices: list[str] | None = None, runs_per_device: int = 1) -> list[dict]:
    """The results of ``configs`` (in order; None for a run that diverged), training those that
    have none yet on this machine (see :class:`~gdwlib.backends.local.LocalBackend`). Raises
    :class:`SweepInterrupted` on Ctrl-C, with a message that says how far it got."""
    configs = list(configs)
    waves = _waves([c for c in _unique(configs) if pending(c)])
    backend = LocalBackend(workers=workers, threads=threads, devices=devices, runs_per_device=runs_per_device,
                           progress=progress)
    total = sum(len(w) for w in waves)
    try:
        backend.submit(waves)
    except KeyboardInterrupt:
        raise SweepInterrupted(f"interrupted: {backend.finished} of the {total} runs to train finished; the others were "
                               "stopped or not started (a stopped run keeps its last epoch checkpoint). Run the "
                               "same command again to resume.") from None
    return [find_result(c) for c in configs]
