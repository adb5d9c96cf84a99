"""A small data set laid out as a user's would be (one folder of PNG images per class), cut from
Fashion-MNIST with label noise injected, so that what ``gdw fit`` finds can be checked against the
truth. The chapter "GDW on your own data" trains on it.

``root/train`` holds each image under its *given* (possibly wrong) class, ``root/meta`` and
``root/test`` hold clean images, and ``root/truth.csv`` says, for each training image (its path
relative to ``root``), its given and true class: the answer sheet a real data set does not come with.
"""
from __future__ import annotations

import csv
import io
import operator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..results import write_bytes
from .fashion_mnist import CLASSES, load_fashion_mnist
from .noise import check_ratio, corrupt_labels, flip_noise_matrix, uniform_noise_matrix
from .split import meta_split
from .user import write_image_folder

FOLDER_CLASSES = [name.replace("/", "-") for name in CLASSES]   # a class name is a folder name


class ExampleFolders(NamedTuple):
    root: Path
    train_paths: list[str]   # under ``root`` as given, as an ImageFolder of ``root / "train"`` names them
    given: np.ndarray        # the training images' labels, as their folders say
    true: np.ndarray         # their true labels
    classes: list[str]


def _balanced(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    chosen, _ = meta_split(labels, per_class, rng)
    return np.sort(chosen)


def write_example_folders(root: str | Path, *, train_per_class: int = 200, meta_per_class: int = 10,
                          test_per_class: int = 100, noise: str = "uniform", ratio: float = 0.4, seed: int = 1,
                          data_dir: str | None = None) -> ExampleFolders:
    """Write ``train/``, ``meta/`` and ``test/`` image folders and ``truth.csv`` under ``root`` from
    Fashion-MNIST: ``train_per_class`` training images of each class with ``noise`` (``uniform`` or
    ``flip``) at ``ratio`` (the public code's matrices, as the book's runs use), and clean meta and
    test images. The training and meta images are disjoint; the draw depends only on ``seed``."""
    check_ratio(ratio)
    if noise not in ("uniform", "flip"):
        raise ValueError(f"noise must be 'uniform' or 'flip', got {noise!r}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; write the example folders into a new directory")
    rng = np.random.default_rng(seed)
    images, labels = load_fashion_mnist("train", data_dir)
    meta, rest = meta_split(labels, meta_per_class, rng)
    train = rest[_balanced(labels[rest], train_per_class, rng)]
    test_images, test_labels = load_fashion_mnist("test", data_dir)
    test = _balanced(test_labels, test_per_class, rng)
    matrix = (uniform_noise_matrix if noise == "uniform" else flip_noise_matrix)(len(CLASSES), ratio)
    true = labels[train]
    given = corrupt_labels(true, matrix, rng)
    paths = write_image_folder(root / "train", images[train], given, FOLDER_CLASSES)
    write_image_folder(root / "meta", images[meta], labels[meta], FOLDER_CLASSES)
    write_image_folder(root / "test", test_images[test], test_labels[test], FOLDER_CLASSES)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("path", "given", "true"))
    writer.writerows((p.relative_to(root).as_posix(), FOLDER_CLASSES[g], FOLDER_CLASSES[t]) for p, g, t in zip(paths, given, true))
    write_bytes(root / "truth.csv", text.getvalue().encode())
    return ExampleFolders(root, [str(p) for p in paths], given, true, FOLDER_CLASSES)


def read_truth(root: str | Path) -> dict[str, tuple[str, str]]:
    """``truth.csv`` of :func:`write_example_folders`: each training image's (given, true) class,
    keyed by its path relative to ``root`` (``train/Coat/000012.png``)."""
    with open(Path(root) / "truth.csv", newline="") as f:
        return {row["path"]: (row["given"], row["true"]) for row in csv.DictReader(f)}


def wrong_labels(paths, root: str | Path) -> np.ndarray:
    """For training images ``paths`` (as an ImageFolder or ``label_issues.csv`` names them), whether
    each one's given label is wrong, from ``truth.csv`` under ``root``."""
    root = Path(root)
    truth = read_truth(root)
    try:
        return np.array([operator.ne(*truth[Path(p).relative_to(root).as_posix()]) for p in paths], dtype=bool)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{e}: not a training image of the example folders under {root}") from None
