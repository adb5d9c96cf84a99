"""Decoded data files kept for the life of a process: a sweep's worker trains run after run on
the same files, and decompressing them (0.5 s for Fashion-MNIST on this project's CPU, seconds for
a CIFAR archive) would otherwise be paid again by every run."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

MAX_ENTRIES = 4   # a data set's train and test splits, for two data sets
_decoded: dict[tuple, tuple[np.ndarray, ...]] = {}


def file_signature(paths: Sequence[str | Path]) -> tuple:
    """What identifies the contents of ``paths``: each file's resolved path, device and inode (a
    file replaced by another), size, modification time and change time. The change time is kept
    because the modification time can be set back (``cp -p``, ``rsync -t`` and ``touch -d`` do), so a
    corrected copy of the same size can keep it; any write or ``utime`` moves the change time on."""
    signature = []
    for path in map(Path, paths):
        stat = path.stat()
        signature.append((str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
                          stat.st_ctime_ns))
    return tuple(signature)


def decoded(what: str, paths: Sequence[str | Path],
            decode: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """``decode()``'s arrays (``what`` names them: one archive can hold several splits), decoded
    once for as long as ``paths`` are the same, unchanged files (:func:`file_signature`). Each call
    gets its own copies, so a caller may change them; a ``decode`` that raises leaves nothing behind."""
    key = (what, file_signature(paths))
    if key not in _decoded:
        arrays = decode()
        while len(_decoded) >= MAX_ENTRIES:
            del _decoded[next(iter(_decoded))]  # the oldest
        _decoded[key] = arrays
    return tuple(a.copy() for a in _decoded[key])
