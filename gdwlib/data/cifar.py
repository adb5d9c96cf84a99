"""CIFAR-10 and CIFAR-100 from the python version of their distribution, found on disk, never downloaded.

Looked for under the ``data_dir`` argument and the ``GDW_DATA`` environment variable: the extracted
directory (``cifar-10-batches-py/``, ``cifar-100-python/``) or the archive itself
(``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``), whose members are read without extracting.
The batch files are pickles, which can run arbitrary code when loaded; they are read by an unpickler
that builds plain numpy arrays, lists, dicts, strings and numbers and refuses everything else.
"""
from __future__ import annotations

import functools
import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .idx import CorruptFileError
from .memo import decoded

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2 names the module numpy.core
    from numpy.core.multiarray import _reconstruct

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
LABEL_KEYS = {"cifar10": "labels", "cifar100": "fine_labels"}
PIXELS = 3 * 32 * 32

def _latin1_bytes(text: object, encoding: object = "utf-8", *, source: str = "") -> bytes:
    """What ``_codecs.encode`` does in a protocol-2 pickle written by Python 3: a Python 3
    ``bytes`` object is stored as its latin-1 text and rebuilt by this call. Only that use (a
    ``str`` and the latin-1 codec) is allowed; ``encode`` with other codecs or arguments is refused."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"{source}: the file called `_codecs.encode` with {type(text).__name__} and codec {encoding!r}; "
                                "only latin-1 text (how Python 3 writes bytes in protocol 2) is allowed")
    return text.encode("latin1")


# what a pickled numpy array needs; numpy 1 writes numpy.core, numpy 2 numpy._core; Python 3's
# protocol-2 pickles write bytes through _codecs.encode
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
# what unpickling damaged bytes may raise besides UnpicklingError
_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                    KeyError, OverflowError, MemoryError, struct.error)
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


class UnsafePickleError(CorruptFileError):
    """A pickle asked for something other than a plain numpy array; it was not loaded."""


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, raw: bytes, source: str):
        super().__init__(io.BytesIO(raw), encoding="bytes")  # the files hold Python 2 strings
        self.source = source

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("_codecs", "encode"):
            return functools.partial(_latin1_bytes, source=self.source)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafePickleError(
            f"{self.source}: the file tried to load `{module}.{name}`, which was refused because it could run "
            "code; CIFAR files hold only numpy arrays, lists and strings. Do not use this file: download the "
            f"data set again from {URL}"
        )


def _unpickle_batch(raw: bytes, source: str) -> dict[str, object]:
    """The dict stored in a batch file, keys as str (the real files use bytes keys)."""
    try:
        batch = _ArrayUnpickler(raw, source).load()
    except CorruptFileError:
        raise
    except _UNPICKLE_ERRORS as e:
        raise CorruptFileError(f"{source}: not a readable CIFAR batch file ({type(e).__name__}: {e}); "
                               f"it is truncated or corrupt: download it again from {URL}") from e
    if not isinstance(batch, dict):
        raise CorruptFileError(f"{source}: holds a {type(batch).__name__}, not the dict of a CIFAR batch")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _parse_batch(raw: bytes, source: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 32, 32, 3)`` and labels ``(N,)`` of one batch file, checked."""
    batch = _unpickle_batch(raw, source)
    key = LABEL_KEYS[name]
    if "data" not in batch or key not in batch:
        raise CorruptFileError(f"{source}: lacks the keys 'data' and '{key}' of a {name} batch "
                               f"(has {sorted(map(str, batch))})")
    data, labels = batch["data"], np.asarray(batch[key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptFileError(f"{source}: 'data' must be a uint8 array of shape (N, {PIXELS}), got {got}")
    if labels.shape != (len(data),) or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise CorruptFileError(f"{source}: '{key}' must hold {len(data)} integer labels, "
                               f"got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES[name]):
        raise CorruptFileError(f"{source}: '{key}' must lie in [0, {NUM_CLASSES[name]}), "
                               f"got values in [{labels.min()}, {labels.max()}]")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _how_to_get(name: str) -> str:
    return (f"Download the python version ({ARCHIVES[name]}) from {URL}, then put the archive, or the "
            f"directory {DIRS[name]}/ extracted from it, in a directory DIR and pass --data-dir DIR "
            "or set GDW_DATA=DIR.")


def find_cifar(name: str, data_dir: str | Path | None = None) -> Path:
    """The extracted directory or the archive of ``name`` under ``data_dir``, else ``$GDW_DATA``
    (a directory given explicitly is the only one looked in)."""
    roots = [Path(d) for d in (data_dir or os.environ.get("GDW_DATA"),) if d]
    for root in roots:
        if (root / DIRS[name]).is_dir():
            return root / DIRS[name]
        if (root / ARCHIVES[name]).is_file():
            return root / ARCHIVES[name]
    looked = ", ".join(f"{root / DIRS[name]}, {root / ARCHIVES[name]}" for root in roots) or "nowhere"
    hint = "" if roots else " (no --data-dir given and GDW_DATA is not set)"
    raise FileNotFoundError(f"{name} not found; looked for: {looked}{hint}. {_how_to_get(name)}")


def _read_from_dir(directory: Path, files: list[str], name: str) -> dict[str, bytes]:
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory / missing[0]} is missing: {directory} is incomplete. {_how_to_get(name)}")
    return {str(directory / f): (directory / f).read_bytes() for f in files}


def _read_from_archive(archive: Path, files: list[str], name: str) -> dict[str, bytes]:
    members = [f"{DIRS[name]}/{f}" for f in files]
    wanted = set(members)
    found = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # one pass: gzip cannot seek back cheaply
                member_name = member.name.removeprefix("./")
                if member_name in wanted and member.isfile():
                    found[member_name] = tar.extractfile(member).read()
    except _ARCHIVE_ERRORS as e:
        raise CorruptFileError(f"{archive}: cannot be read as a tar archive ({type(e).__name__}: {e}); "
                               f"it is truncated or corrupt: download it again from {URL}") from e
    missing = sorted(wanted - set(found))
    if missing:
        raise CorruptFileError(f"{archive}: lacks the member {missing[0]}; it is not the {name} python archive "
                               f"or is incomplete: download it again from {URL}")
    return {f"{archive}:{m}": found[m] for m in members}


def load_cifar(name: str, split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 32, 32, 3)`` uint8 (HWC) and labels ``(N,)`` int64 (fine labels for CIFAR-100)."""
    if name not in FILES:
        raise ValueError(f"unknown data set {name!r}: use 'cifar10' or 'cifar100'")
    if split not in FILES[name]:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    location = find_cifar(name, data_dir)
    files = FILES[name][split]
    read = _read_from_dir if location.is_dir() else _read_from_archive

    def decode():
        parts = [_parse_batch(raw, source, name) for source, raw in read(location, files, name).items()]
        return np.ascontiguousarray(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts])

    sources = [location / f for f in files] if location.is_dir() else [location]
    if not all(p.is_file() for p in sources):  # the reader says which file is missing
        return decode()
    return decoded(f"{name} {split}", sources, decode)


class _Python2Pickler(pickle._Pickler):
    """Protocol 2 with bytes and str written as Python 2 strings, as in the distributed files, which Python 2
    wrote (numpy's dtype arguments included); they load as bytes with ``encoding="bytes"``.

    Only the pure-Python pickler lets this be changed; the C one writes bytes as calls to ``_codecs.encode``,
    which no distributed CIFAR file contains (a file re-pickled by Python 3 does, and loads as well).
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_string(self, obj: bytes | str) -> None:
        data = obj.encode("ascii") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_python2_string


def _write_batch(path: Path, batch_label: str, images: np.ndarray, labels: dict[str, np.ndarray]) -> None:
    batch = {
        b"batch_label": batch_label.encode(),
        **{key.encode(): [int(v) for v in values] for key, values in labels.items()},
        b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), PIXELS)),
        b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(images))],
    }
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(batch)


def _check_arrays(name: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{split} images must be uint8 of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if (labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer)
            or (labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES[name]))):
        raise ValueError(f"{split} labels must be {len(images)} integers in [0, {NUM_CLASSES[name]})")


def write_cifar(root: str | Path, name: str, train: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray]) -> Path:
    """Write ``train`` and ``test`` (images HWC uint8, labels) as the python version of ``name`` under ``root``.

    Same files, keys and layout as the distribution (CIFAR-10's training set in five batches); the
    ``batches.meta``/``meta`` files of class names are not written, and CIFAR-100's coarse labels are
    placeholders (fine // 5). Returns the directory written.
    """
    if name not in FILES:
        raise ValueError(f"unknown data set {name!r}: use 'cifar10' or 'cifar100'")
    directory = Path(root) / DIRS[name]
    directory.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in (("train", train), ("test", test)):
        images, labels = np.asarray(images), np.asarray(labels)
        _check_arrays(name, split, images, labels)
        files = FILES[name][split]
        for i, chunk in enumerate(np.array_split(np.arange(len(images)), len(files))):
            kind = "training" if split == "train" else "testing"
            label_sets = ({"labels": labels[chunk]} if name == "cifar10"
                          else {"fine_labels": labels[chunk], "coarse_labels": labels[chunk] // 5})
            _write_batch(directory / files[i], f"{kind} batch {i + 1} of {len(files)}", images[chunk], label_sets)
    return directory
