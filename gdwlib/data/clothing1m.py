"""Clothing1M from the files of its distribution: two label files (``noisy_label_kv.txt``,
``clean_label_kv.txt``, one ``<image key> <label>`` line per image, labels 0..13), four key lists
(``noisy_train_key_list.txt``, ``clean_train_key_list.txt``, ``clean_val_key_list.txt``,
``clean_test_key_list.txt``, one image key per line) and the ``images/`` tree the keys point into.
The noisy training split carries the web labels; the clean splits carry the human ones, and
``clean_val`` serves as the meta set. Everything but the images is read and checked up front; an
image is opened only when its item is asked for.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .idx import CorruptFileError

NUM_CLASSES = 14
NOISY_LABELS, CLEAN_LABELS = "noisy_label_kv.txt", "clean_label_kv.txt"
SPLITS = {  # split -> (key list, label file)
    "noisy_train": ("noisy_train_key_list.txt", NOISY_LABELS),
    "clean_train": ("clean_train_key_list.txt", CLEAN_LABELS),
    "clean_val": ("clean_val_key_list.txt", CLEAN_LABELS),
    "clean_test": ("clean_test_key_list.txt", CLEAN_LABELS),
}
LAYOUT = (
    "Expected layout of the Clothing1M root: noisy_label_kv.txt, clean_label_kv.txt, noisy_train_key_list.txt, "
    "clean_train_key_list.txt, clean_val_key_list.txt, clean_test_key_list.txt and the images/ directory "
    "(e.g. images/0/00/xxx.jpg), as distributed by the data set's authors "
    "(https://github.com/Cysu/noisy_label; it cannot be downloaded automatically)."
)


def _records(path: Path, num_fields: int, form: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of the non-blank lines of ``path``, each with ``num_fields`` fields."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != num_fields:
                raise CorruptFileError(f"{path}:{line_no}: expected '{form}', got {line.strip()!r}")
            yield line_no, fields


def _check_key(key: str, path: Path, line_no: int) -> None:
    parts = PurePosixPath(key).parts
    if PurePosixPath(key).is_absolute() or ".." in parts:
        raise CorruptFileError(f"{path}:{line_no}: image key {key!r} must be a path relative to the root, inside it")


def read_label_file(path: str | Path) -> dict[str, int]:
    """The ``key -> label`` map of a ``*_label_kv.txt`` file, every label checked to lie in [0, 14)."""
    path = Path(path)
    labels: dict[str, int] = {}
    for line_no, (key, text) in _records(path, 2, "<image key> <label>"):
        _check_key(key, path, line_no)
        try:
            label = int(text)
        except ValueError:
            raise CorruptFileError(f"{path}:{line_no}: label {text!r} is not an integer") from None
        if not 0 <= label < NUM_CLASSES:
            raise CorruptFileError(f"{path}:{line_no}: label {label} lies outside [0, {NUM_CLASSES})")
        if labels.setdefault(key, label) != label:
            raise CorruptFileError(f"{path}:{line_no}: {key} is labelled {label} here and {labels[key]} earlier")
    return labels


def read_key_list(path: str | Path, labels: Mapping[str, int], label_file: str) -> tuple[list[str], np.ndarray]:
    """The keys of a ``*_key_list.txt`` file and their labels from ``labels`` (read from ``label_file``)."""
    path = Path(path)
    keys, values = [], []
    for line_no, (key,) in _records(path, 1, "<image key>"):
        _check_key(key, path, line_no)
        if key not in labels:
            raise CorruptFileError(f"{path}:{line_no}: {key} has no label in {label_file}")
        keys.append(key)
        values.append(labels[key])
    return keys, np.array(values, dtype=np.int64)


def _require(root: Path, names: Sequence[str]) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"Clothing1M root {root} does not exist or is not a directory. {LAYOUT}")
    for name in names:
        if not (root / name).exists():
            raise FileNotFoundError(f"Clothing1M file {root / name} is missing. {LAYOUT}")


def clothing1m_root(data_dir: str | Path) -> Path:
    """The Clothing1M directory: ``data_dir`` itself, or its ``clothing1m/`` folder where the label
    files are there instead (one data directory can then hold CIFAR beside Clothing1M)."""
    root = Path(data_dir)
    if not (root / CLEAN_LABELS).exists() and (root / "clothing1m" / CLEAN_LABELS).exists():
        return root / "clothing1m"
    return root


class Clothing1M(Dataset):
    """One split of Clothing1M; item ``i`` is ``(transform(image), label, i)``, the image a PIL RGB image
    when ``transform`` is None.

    ``labels`` are the split's labels (noisy for ``noisy_train``); ``true_labels`` the clean label of
    each item where one is known, -1 elsewhere.
    """

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None):
        if split not in SPLITS:
            raise ValueError(f"unknown Clothing1M split {split!r}: use one of {', '.join(SPLITS)}")
        key_file, label_file = SPLITS[split]
        self.root, self.split, self.transform = Path(root), split, transform
        _require(self.root, sorted({key_file, label_file, CLEAN_LABELS, "images"}))
        clean = read_label_file(self.root / CLEAN_LABELS)
        labels = clean if label_file == CLEAN_LABELS else read_label_file(self.root / label_file)
        self.keys, self.labels = read_key_list(self.root / key_file, labels, label_file)
        self.true_labels = np.array([clean.get(key, -1) for key in self.keys], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def load_image(self, index: int) -> Image.Image:
        path = self.root / self.keys[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"Clothing1M image {path} (listed in {SPLITS[self.split][0]}) is missing. "
                                    f"{LAYOUT}") from None
        except OSError as e:  # PIL's UnidentifiedImageError and truncated-image errors are OSErrors
            raise CorruptFileError(f"Clothing1M image {path} cannot be read ({e}); it is truncated or corrupt") from e

    def __getitem__(self, index: int) -> tuple[object, int, int]:
        image = self.load_image(index)
        return (self.transform(image) if self.transform else image), int(self.labels[index]), index


def write_clothing1m(root: str | Path, noisy_labels: Mapping[str, int], clean_labels: Mapping[str, int],
                     splits: Mapping[str, Sequence[str]], size: int = 8) -> Path:
    """Write a small Clothing1M tree under ``root``, for tests; returns ``root``.

    ``splits`` maps split names to their keys (a split left out gets an empty key list). Every key gets a
    ``size`` x ``size`` image, PNG or JPEG after its suffix, of one colour ``(k, 2k, 3k) mod 256`` where k
    is the key's position in the sorted list of all keys. Labels are written unchecked, so broken trees
    can be built too.
    """
    root = Path(root)
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown Clothing1M splits {sorted(unknown)}: use {', '.join(SPLITS)}")
    all_keys = sorted(set(noisy_labels) | set(clean_labels) | {k for keys in splits.values() for k in keys})
    for k, key in enumerate(all_keys):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size, size), (k % 256, 2 * k % 256, 3 * k % 256)).save(root / key)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, labels in ((NOISY_LABELS, noisy_labels), (CLEAN_LABELS, clean_labels)):
        (root / name).write_text("".join(f"{key} {label}\n" for key, label in labels.items()))
    for split, (key_file, _) in SPLITS.items():
        (root / key_file).write_text("".join(f"{key}\n" for key in splits.get(split, ())))
    return root
