"""What was submitted to Slurm for a results directory, and which of it Slurm still lists: read
without submitit, so that ``sweep --status`` works wherever ``squeue`` does."""
from __future__ import annotations

import fcntl
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from ..results import UnreadableFileError, read_json
from . import SlurmError

QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


class Ledger:
    """The Slurm tasks submitted for a results directory: ``<results>/slurm/jobs.json``, job id ->
    run id, submission time and log files."""

    def __init__(self, results_dir: str | Path):
        self.directory = Path(results_dir).resolve() / "slurm"
        self.path = self.directory / "jobs.json"

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            ledger = read_json(self.path)
        except UnreadableFileError as e:
            raise SlurmError(f"{e}; move it aside, and check with squeue that no job of this sweep still runs "
                             "before sweeping again") from None
        return ledger if isinstance(ledger, dict) else {}

    @contextmanager
    def locked(self):
        """Hold the ledger's lock: one submission at a time per results directory."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".submit.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def active(self) -> dict[str, str]:
        """Run id -> "queued" or "running", for this ledger's tasks that Slurm still lists."""
        queue, out = slurm_queue(), {}
        for job, entry in self.read().items():
            state = queue.get(job)
            if state in RUNNING:
                out[entry["run_id"]] = "running"
            elif state in QUEUED and out.get(entry["run_id"]) != "running":
                out[entry["run_id"]] = "queued"
        return out

    def last_job(self) -> dict[str, dict]:
        """Run id -> the entry (with its ``job`` id) of the last task submitted for it."""
        out = {}
        for job, entry in self.read().items():
            if entry["run_id"] not in out or entry["submitted"] >= out[entry["run_id"]]["submitted"]:
                out[entry["run_id"]] = {**entry, "job": job}
        return out


def slurm_queue() -> dict[str, str]:
    """Job id -> Slurm state of every job Slurm still lists (array tasks one by one)."""
    if shutil.which("squeue") is None:
        raise SlurmError("this results directory has Slurm jobs (slurm/jobs.json), but squeue is not on PATH: "
                         "ask from a machine of the cluster, where their state can be read")
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True)
    if out.returncode:
        raise SlurmError(f"squeue failed: {out.stderr.strip()}; is slurmctld running?")
    return dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
