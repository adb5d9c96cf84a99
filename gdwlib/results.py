"""Result and checkpoint files: written atomically (a temporary file in the same directory,
flushed to disk, then ``os.replace`` and an fsync of the directory), so a killed run never leaves
a half-written file behind, and a write that fails (disk full, read-only) says where and why."""
from __future__ import annotations

import errno
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__


class UnreadableFileError(ValueError):
    """A result or record file that exists but cannot be read as what it should be."""


class ResultsWriteError(OSError):
    """A file of the results could not be written (no space, read-only, no permission)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


_WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "it is on a read-only file system", errno.EACCES: "it is not writable (permission denied)",
        errno.EPERM: "it is not writable (operation not permitted)"}


def _write_error(directory: Path, e: OSError) -> ResultsWriteError:
    why = _WHY.get(e.errno, e.strerror or str(e))
    return ResultsWriteError(e.errno, f"cannot write to {directory}: {why}. Free some space or choose another "
                                      "directory (--results-dir); files written before are kept")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(path.parent)  # the rename itself survives a crash
    except OSError as e:
        raise _write_error(path.parent, e) from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def check_writable(directory: str | Path, reserve: int = 1 << 20) -> None:
    """Fail at once, not after an epoch, where ``directory`` cannot take files: write ``reserve``
    bytes there and remove them again."""
    probe = Path(directory) / f".write-check-{os.getpid()}-{os.urandom(4).hex()}"  # parallel runs check at once
    _atomic_write(probe, b"\0" * reserve)
    probe.unlink()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Any file of the results (a figure, say), written atomically."""
    _atomic_write(Path(path), data)


def write_json(path: str | Path, obj: Any) -> None:
    _atomic_write(Path(path), (json.dumps(obj, indent=1, default=_jsonable) + "\n").encode())


def read_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnreadableFileError(f"{path}: not valid JSON ({e})") from e


def serialized(obj: Any) -> bytes:
    """``obj`` as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(path: str | Path, obj: Any) -> None:
    _atomic_write(Path(path), serialized(obj))


def read_model_state(directory: str | Path, device: torch.device | str = "cpu") -> dict:
    """The final network's ``state_dict`` saved in a finished run's directory."""
    path = Path(directory) / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the run in {Path(directory).name} has no saved model. Delete its "
                                "result.json so that it is trained again.")
    return torch.load(path, map_location=device, weights_only=True)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    _atomic_write(Path(path), buffer.getvalue())


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def code_version() -> dict[str, str]:
    """The package version and, inside a git checkout, the commit (with '-dirty' for local edits)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"gdwlib": __version__, "commit": commit or "unknown"}


def device_info(device: torch.device) -> dict[str, Any]:
    """What the run ran on, for the result file and every table that quotes it."""
    info = {"type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["name"] = _cpu_name()
        info["cores"] = os.cpu_count()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
