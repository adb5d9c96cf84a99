"""Where pending runs train. A backend decides only *where*; what is done is read from the
results directory (a run is done when its ``result.json`` is valid, diverged when it has a
``failure.json``), so every backend resumes the same way and a sweep never retrains a run.

A backend has two methods:

- ``submit(configs)`` starts the given runs (the local backend trains them before it returns;
  the Slurm backend queues them and returns the job ids);
- ``active()`` maps the run ids it knows to be queued or running to ``"queued"`` or
  ``"running"``, so that a sweep never submits a run twice.

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

    def active(self) -> dict[str, str]:
        """Run id -> "queued" or "running", for the runs this backend has in flight."""


BACKENDS = ("local", "slurm")


class SlurmError(RuntimeError):
    """Slurm cannot take the sweep as asked (not installed, unknown partition, a refused option)."""


def get_backend(name: str, **options) -> Backend:
    """The backend called ``name`` with its options (see :mod:`.local` and :mod:`.slurm`)."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**options)
    if name == "slurm":
        from .slurm import SlurmBackend

        return SlurmBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
