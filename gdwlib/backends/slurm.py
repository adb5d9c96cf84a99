"""A Slurm cluster, through submitit: every pending run becomes one task of a job array, with
``gpus`` GPUs (the command line asks for one under the paper profile, none under cpu and smoke).

- **Requeue.** A task that is preempted or reaches its time limit is requeued by submitit (the
  run's callable is :class:`submitit.helpers.Checkpointable`) and resumes from the run's last
  epoch checkpoint, which the trainer writes anyway.
- **Never twice.** Every submitted task is written to a ledger in the results directory
  (``slurm/jobs.json``: job id, run id, log files); the ledger asks ``squeue`` which of them are
  still queued or running, and submissions hold a lock on the ledger, so two sweeps at once, or a
  sweep while jobs run, submit each run once.
- **State from files.** Whether a run is done or diverged is read from its run directory, never
  from Slurm's accounting (often off; submitit then reports every state as UNKNOWN).
- **Shared file systems.** Jobs run the submitting interpreter (``sys.executable``, so the
  project's virtual environment) in the submitting directory, and write the results directory
  and the logs folder: all three must be on a file system every compute node mounts.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import submitit

from ..config import RunConfig
from ..results import ResultsWriteError, check_writable, write_json
from ..train import run_directory, settled, train_or_record
from . import SlurmError
from .ledger import Ledger


def minutes(limit: str) -> int:
    """A Slurm time limit (``MM``, ``HH:MM:SS``, ``D-HH`` or ``D-HH:MM[:SS]``) in whole minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", limit.strip())
    if not m:
        raise ValueError(f"--time takes a Slurm time limit such as 12:00:00 or 1-00:00:00, got {limit!r}")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:   # D-HH[:MM[:SS]]
        h, mi, s = a, b or 0, c or 0
    elif b is None:        # MM
        return max(1, a)
    elif c is None:        # MM:SS
        h, mi, s = 0, a, b
    else:                  # HH:MM:SS
        h, mi, s = a, b, c
    return max(1, (days or 0) * 1440 + h * 60 + mi + (1 if s else 0))


def _sbatch_options(lines: list[str]) -> dict[str, str]:
    """``--sbatch`` values (``account=proj`` or ``--qos=high``) as submitit's additional parameters."""
    out = {}
    for line in lines:
        key, sep, value = line.strip().lstrip("-").partition("=")
        if not key:
            raise ValueError(f"--sbatch takes NAME=VALUE (an sbatch option without its dashes), got {line!r}")
        out[key.replace("-", "_")] = value if sep else True
    return out


class SlurmRun(submitit.helpers.Checkpointable):
    """One run as a Slurm task. On preemption or a time limit, submitit calls ``checkpoint``
    (inherited: resubmit the same call) and requeues the task, which then resumes the run from its
    last epoch checkpoint."""

    def __call__(self, config: RunConfig) -> str:
        train_or_record(config)
        return run_directory(config).name


class SlurmBackend:
    """Submit to Slurm. ``partition``, ``time`` (a limit per run), ``gpus``, ``cpus``, ``mem``
    (e.g. ``32G``), ``sbatch`` (extra ``NAME=VALUE`` options), ``setup`` (shell lines run before
    each task, e.g. ``module load cuda``), ``max_parallel`` (tasks of an array running at once)
    ``logs`` (default ``<results>/slurm/logs``; on a shared file system) and ``threads`` (torch
    threads per run, default ``cpus``)."""

    name = "slurm"

    def __init__(self, results_dir: str, logs: str | None = None, partition: str | None = None,
                 time_limit: str = "12:00:00", gpus: int = 1, cpus: int = 4, mem: str | None = None,
                 sbatch: list[str] | None = None, setup: list[str] | None = None, max_parallel: int | None = None,
                 threads: int | None = None, job_name: str = "gdw"):
        for command in ("sbatch", "squeue", "sinfo", "scontrol"):
            if shutil.which(command) is None:
                raise SlurmError(f"no Slurm here: {command} is not on PATH. Run the sweep on a Slurm login node, "
                                 "or start a one-node cluster on this machine with scripts/slurm-local.sh start")
        if partition is not None:
            known = self.partitions()
            if partition not in known:
                raise SlurmError(f"Slurm has no partition {partition!r}; it has {', '.join(known) or 'none'}")
        if gpus < 0 or cpus < 1:
            raise ValueError(f"--gpus must be at least 0 and --cpus at least 1, got {gpus} and {cpus}")
        self.ledger = Ledger(results_dir)
        self.logs = Path(logs).resolve() if logs else self.ledger.directory / "logs"
        try:
            check_writable(self.logs)
        except ResultsWriteError as e:
            raise SlurmError(f"the logs folder {self.logs} cannot take files ({str(e).split(': ', 1)[-1].split('.')[0]}); "
                             "choose another with --logs, on a file system the compute nodes share") from None
        check_writable(self.ledger.directory)
        parameters = dict(time=minutes(time_limit), cpus_per_task=cpus, job_name=job_name,
                          additional_parameters=_sbatch_options(sbatch or []), setup=list(setup or []))
        if partition:
            parameters["partition"] = partition
        if gpus:
            parameters["gpus_per_node"] = gpus
        if mem:
            parameters["mem"] = mem
        if max_parallel:
            parameters["array_parallelism"] = max_parallel
        self.parameters = parameters
        self.threads = threads or cpus

    @staticmethod
    def partitions() -> list[str]:
        out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True)
        if out.returncode:
            raise SlurmError(f"sinfo failed: {out.stderr.strip() or out.stdout.strip()}; is slurmctld running?")
        return [p.rstrip("*") for p in out.stdout.split()]

    def _for_job(self, c: RunConfig) -> RunConfig:
        """``c`` as a task runs it: absolute locations (a task may start elsewhere), its threads,
        and "auto" made the device the task has (a GPU when it asks for one)."""
        device = ("cuda" if self.parameters.get("gpus_per_node") else "cpu") if c.device == "auto" else c.device
        return c.replace(results_dir=str(Path(c.results_dir).resolve()), threads=self.threads, device=device,
                         data_dir=str(Path(c.data_dir).resolve()) if c.data_dir else None)

    def _refusal(self, reason: str) -> str:
        """sbatch's refusal, with what it means and what to do where that is known."""
        gpus = self.parameters.get("gpus_per_node")
        if gpus and "Invalid generic resource (gres)" in reason:   # Slurm knows no GPUs where the tasks would go
            where = f"partition {self.parameters['partition']!r}" if "partition" in self.parameters else "the cluster"
            return (f"sbatch refused the job array: {reason}: {where} offers no GPUs through gres (Slurm's generic "
                    f"resources), and each run asks for {gpus}; pass --gpus 0 to run on CPU nodes, or name a GPU "
                    "partition with --partition")
        return f"sbatch refused the job array: {reason}"

    def submit(self, waves: list[list[RunConfig]]) -> list[str]:
        """Queue every run of ``waves`` that is not finished, queued or running; one job array per
        wave, each waiting for the arrays before it. Returns the new job ids."""
        executor = submitit.SlurmExecutor(folder=self.logs, python=sys.executable)
        jobs, after = [], []
        with self.ledger.locked():
            active, ledger = self.ledger.active(), self.ledger.read()
            for wave in waves:
                wave = [c for c in map(self._for_job, wave) if run_directory(c).name not in active and not settled(c)]
                if not wave:
                    continue
                extra = dict(self.parameters["additional_parameters"])
                if after:
                    extra["dependency"] = "afterany:" + ":".join(after)
                executor.update_parameters(**{**self.parameters, "additional_parameters": extra})
                printed = io.StringIO()
                try:
                    with contextlib.redirect_stderr(printed):   # submitit prints sbatch's refusal; one line says it
                        submitted = executor.map_array(SlurmRun(), wave)
                except Exception as e:  # noqa: BLE001 - sbatch's refusal arrives as submitit's generic error
                    raise SlurmError(self._refusal(str(e).strip().splitlines()[-1])) from None
                sys.stderr.write(printed.getvalue())
                now = time.time()
                for job, config in zip(submitted, wave):
                    ledger[job.job_id] = {"run_id": run_directory(config).name, "submitted": now,
                                          "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
                    active[run_directory(config).name] = "queued"
                write_json(self.ledger.path, ledger)
                after.append(submitted[0].job_id.split("_")[0])
                jobs += [j.job_id for j in submitted]
        return jobs
