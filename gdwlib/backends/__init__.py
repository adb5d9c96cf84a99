"""Where pending runs train. A backend decides only *where*; what is done is read from the
results directory (a run is done when its ``result.json`` is valid, diverged when it has a
``failure.json``), so every backend resumes the same way and a sweep never retrains a run.

A backend has one method, ``submit(waves)``: it starts the given runs (the local backend trains
them before it returns; the Slurm backend queues them and returns the job ids). What is queued or
running is known from the run directories' locks and, for Slurm, from its ledger
(:mod:`.ledger`), so that a sweep never submits a run twice.

The backends sit between the sweep and the trainer: they import ``train``, the sweep imports
them, and nothing in the book imports a backend.
"""
from __future__ import annotations

from typing import Protocol

from ..config import RunConfig


class Backend(Protocol):
    name: str

    def submit(self, configs: list[list[RunConfig]]) -> list[str]:
        """Start ``configs``, given as waves: a wave's runs may start only once the earlier
        waves' runs have finished (the runs that Fine-tuning starts from come first)."""



BACKENDS = ("local", "slurm")


class SlurmError(RuntimeError):
    """Slurm cannot take the sweep as asked (not installed, unknown partition, a refused option)."""
