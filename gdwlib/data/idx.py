"""Reader for the idx format of (Fashion-)MNIST: a 4-byte magic number, big-endian dimension
sizes, then raw values. Plain and gzip-compressed files are both read."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

# third byte of the magic number -> element type
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class CorruptFileError(ValueError):
    """A data file exists but does not hold what its format promises."""


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an idx file (``.gz`` or not)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip: truncation EOFError, bad header OSError, bad data zlib.error
        raise CorruptFileError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'idx'} ({e}); "
                               "delete it and install or download it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise CorruptFileError(f"{path}: not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptFileError(
            f"{path}: holds {len(raw)} bytes but its header {shape} promises {expected}; "
            "the file is truncated or corrupt: delete it and install or download it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` in idx format (gzip-compressed when ``path`` ends in ``.gz``)."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("=").str: k for k, v in _DTYPES.items()}
    code = codes[np.dtype(array.dtype).newbyteorder("=").str]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    body = np.ascontiguousarray(array).astype(np.dtype(_DTYPES[code])).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + body)
