"""Fashion-MNIST from its four standard idx files, found on disk, never downloaded silently.

A directory given explicitly (the ``data_dir`` argument, else the ``GDW_DATA`` environment
variable) is the only place looked in: files missing there are an error, never replaced by
another copy. Without one: Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``), then the download cache (``~/.cache/gdw``). Each place
may hold the files directly, or in torchvision's layout (``FashionMNIST/raw``), compressed or
not. Where neither has them and ``GDW_DOWNLOAD=1`` is set, torchvision downloads them into the
cache (only then: the project's machines have no internet).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .idx import read_idx
from .memo import decoded

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path.home() / ".cache" / "gdw"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET = (
    "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; `make data` does this), "
    "or put the four idx files (train-images-idx3-ubyte.gz, ...) in a directory and pass it as "
    "--data-dir / set GDW_DATA, or fetch them with torchvision: "
    "`python -c \"import torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\"` "
    "and use DIR, or set GDW_DOWNLOAD=1 to let gdwlib do that into ~/.cache/gdw."
)


def explicit_dir(data_dir: str | Path | None = None) -> tuple[Path, str] | None:
    """The directory the user named (``data_dir``, else ``$GDW_DATA``) and how, or None."""
    if data_dir:
        return Path(data_dir), "--data-dir"
    if os.environ.get("GDW_DATA"):
        return Path(os.environ["GDW_DATA"]), "GDW_DATA"
    return None


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    explicit = explicit_dir(data_dir)
    if explicit and not explicit[0].is_dir():
        raise FileNotFoundError(f"{explicit[1]} {explicit[0]} is not a directory: name the directory that holds "
                                "the Fashion-MNIST idx files, or leave it out to use the system copy")
    roots = [explicit[0]] if explicit else [DEBIAN_DIR, CACHE_DIR]
    out = []
    for root in roots:
        out += [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    return out


def _find(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def fashion_mnist_files(split: str = "train", data_dir: str | Path | None = None) -> tuple[Path, Path]:
    """The image and label files of ``split`` that :func:`load_fashion_mnist` reads."""
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    dirs = candidate_dirs(data_dir)
    explicit = explicit_dir(data_dir)
    paths = [_find(stem, dirs) for stem in FILES[split]]
    if None in paths and os.environ.get("GDW_DOWNLOAD") == "1" and not explicit:
        import torchvision

        torchvision.datasets.FashionMNIST(str(CACHE_DIR), train=split == "train", download=True)
        paths = [_find(stem, dirs) for stem in FILES[split]]
    if None in paths:
        missing = FILES[split][paths.index(None)]
        looked = ", ".join(str(d) for d in dirs)
        where = f"{explicit[1]} {explicit[0]} holds no {missing}[.gz]" if explicit else \
            f"Fashion-MNIST ({split}) not found"
        raise FileNotFoundError(f"{where}; looked in: {looked}. {HOW_TO_GET}")
    return paths[0], paths[1]


def load_fashion_mnist(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of the ``"train"`` or ``"test"`` split."""
    paths = fashion_mnist_files(split, data_dir)
    images, labels = decoded(f"fashion-mnist {split}", paths, lambda: (read_idx(paths[0]), read_idx(paths[1])))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{paths[0]} and {paths[1]} do not match: images {images.shape}, labels {labels.shape}")
    if labels.max() >= len(CLASSES):
        raise ValueError(f"{paths[1]}: labels must lie in [0, 10), found {labels.max()}")
    return images, labels.astype(np.int64)
