"""Stand-in data sets in the real file formats, for rehearsing the paper's grid where the real
ones cannot be downloaded: CIFAR-10 and CIFAR-100 in their python-version layout and a Clothing1M
tree in its own, each with a few random images per class. They exercise every loader, split and
batch path of the real data; nothing learned on them means anything."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .cifar import write_cifar
from .clothing1m import NUM_CLASSES as CLOTHING_CLASSES
from .clothing1m import write_clothing1m

# images per class: enough for the rehearsal's meta sets (2 per class on CIFAR-10, 1 on CIFAR-100)
# and a training set of at least two batches of 10
PER_CLASS = {"cifar10": (6, 3), "cifar100": (3, 1)}   # (train, test)


def _images(rng: np.random.Generator, classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(classes), per_class)
    return rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8), rng.permutation(labels)


def write_stand_ins(root: str | Path, seed: int = 0) -> Path:
    """Write CIFAR-10, CIFAR-100 and Clothing1M stand-ins under ``root`` (Clothing1M in
    ``root/clothing1m``), ready for ``--data-dir root``."""
    root, rng = Path(root), np.random.default_rng(seed)
    for name, classes in (("cifar10", 10), ("cifar100", 100)):
        train, test = PER_CLASS[name]
        write_cifar(root, name, _images(rng, classes, train), _images(rng, classes, test))
    keys = {split: [f"images/{split}/{c}_{i}.jpg" for c in range(CLOTHING_CLASSES) for i in range(n)]
            for split, n in (("noisy_train", 2), ("clean_train", 1), ("clean_val", 1), ("clean_test", 1))}
    noisy = {k: int(rng.integers(CLOTHING_CLASSES)) for k in keys["noisy_train"]}
    clean = {k: int(k.split("/")[-1].split("_")[0]) for split in ("clean_train", "clean_val", "clean_test")
             for k in keys[split]}
    write_clothing1m(root / "clothing1m", noisy, clean, keys)
    return root
