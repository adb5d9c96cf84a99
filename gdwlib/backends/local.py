"""This machine: worker processes train independent runs side by side, on the CPU or spread over
the GPUs named by ``devices`` with ``runs_per_device`` runs sharing each one.

Ctrl-C stops a sweep within seconds: queued runs are not started, running ones stop where they
are (each keeps its checkpoint after its last finished epoch), and running the same command again
resumes. A terminal sends SIGINT to the whole process group; a worker that receives it stops its
run and starts no other, and the backend forwards the signal to its workers in case it came to
the sweep alone (``kill -INT``). Workers start with SIGINT blocked and take it only once they are
ready for it: one that came while a worker still imported torch would end it with a traceback.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager

import torch
from tqdm import tqdm

from ..config import RunConfig
from ..train import run_directory, train_or_record


def check_devices(devices: list[str]) -> None:
    """Each of ``devices`` is ``cpu`` or a CUDA device that exists here."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for name in devices:
        if name == "cpu":
            continue
        if not name.startswith("cuda:") or not name[5:].isdigit():
            raise ValueError(f"--devices takes cpu or cuda:N (N counting from 0), got {name!r}")
        if int(name[5:]) >= count:
            have = f"it has {count}: cuda:0 to cuda:{count - 1}" if count else "it has no CUDA device"
            raise ValueError(f"--devices names {name}, which this machine does not have ({have})")


_stopping = False   # in a worker: a SIGINT arrived, start no further run
_training = False   # in a worker: a run trains, and a SIGINT stops it


def _on_sigint(signum, frame) -> None:
    global _stopping
    first, _stopping = not _stopping, True
    # only the first, and only in a run: anywhere else (between runs, a forwarded second one) it would
    # hit the pool's own loop, which ends the worker with a traceback
    if first and _training:
        raise KeyboardInterrupt


def _init_worker(threads: int, slots) -> None:
    signal.signal(signal.SIGINT, _on_sigint)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # one that came while the worker started arrives now
    torch.set_num_threads(threads)
    device = slots.get() if slots is not None else "cpu"
    if device.startswith("cuda:"):  # before this process touches CUDA: "cuda" then means this GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = device[5:]


def _train(config: RunConfig) -> None:
    global _training
    _training = True   # before the check: a SIGINT between the two then still stops the run
    try:
        if not _stopping:
            train_or_record(config)
    finally:
        _training = False


@contextmanager
def _sigint_blocked():
    """SIGINT waits while this holds, and processes started meanwhile start with it blocked."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)   # one that came meanwhile arrives here


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the pool now: drop queued runs, interrupt running ones (their checkpoints stay)."""
    for process in list(getattr(pool, "_processes", {}).values()):  # the executor offers no public handle
        try:
            os.kill(process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


class LocalBackend:
    """Train on this machine, ``workers`` runs at a time (or ``len(devices) * runs_per_device``),
    each with ``threads`` torch threads (default: the cores divided among the workers)."""

    name = "local"

    def __init__(self, workers: int = 2, threads: int | None = None, devices: list[str] | None = None,
                 runs_per_device: int = 1, progress: bool = True):
        if devices:
            check_devices(devices)
            if runs_per_device < 1:
                raise ValueError(f"--runs-per-device must be at least 1, got {runs_per_device}")
            workers = len(devices) * runs_per_device
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self.workers, self.devices, self.runs_per_device = workers, devices, runs_per_device
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.progress = progress
        self.finished = 0

    def _slots(self, context):
        if not self.devices:
            return None
        slots = context.Queue()
        for _ in range(self.runs_per_device):   # round robin: the first runs go to different devices
            for device in self.devices:
                slots.put(device)
        return slots

    def submit(self, waves: list[list[RunConfig]]) -> list[str]:
        """Train every wave in turn; returns their run ids when all have finished (or diverged)."""
        total = sum(len(w) for w in waves)
        bar = tqdm(total=total, disable=not self.progress or not total, desc="runs", unit="run")
        self.finished = 0
        try:
            for wave in waves:
                if self.workers <= 1 and not self.devices:
                    torch.set_num_threads(self.threads)
                    for c in wave:
                        train_or_record(c)
                        bar.update(1)
                        self.finished += 1
                    continue
                context = multiprocessing.get_context("spawn")
                pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                           initargs=(self.threads, self._slots(context)))
                try:
                    with _sigint_blocked():   # the pool starts its workers as runs are submitted
                        waiting = {pool.submit(_train, c) for c in wave}
                    while waiting:
                        finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                        for future in finished:
                            future.result()
                            bar.update(1)
                            self.finished += 1
                except BaseException:
                    _stop(pool)
                    raise
                pool.shutdown()
        finally:
            bar.close()
        return [run_directory(c).name for w in waves for c in w]
