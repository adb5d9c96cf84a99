"""Your own data for ``gdw fit``: image folders in torchvision's ``ImageFolder`` layout (one
folder per class) or ``.npz`` files holding ``x`` (images) and ``y`` (labels), checked before any
training so that a bad input gets one clear line and nothing is written:

- an empty folder, a folder without class folders, an ``.npz`` without ``x`` and ``y``;
- an image that cannot be read or is truncated (named; ``skip_bad`` skips it and reports it);
- images of different sizes without ``resize``;
- a meta set whose classes differ from the training set's, or a class without meta images;
- a meta set that shares images with the training set (a warning, with the count).
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset


@dataclass
class UserData:
    """One set: the Dataset (yielding ``(x, y)``), its class names, each instance's file (or its
    row in the ``.npz``), its labels, the (channels, height, width) of its images, and the files
    skipped as unreadable."""

    dataset: Dataset
    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    shape: tuple[int, int, int]
    skipped: list[str]


def _image_size(path: str) -> tuple[tuple[int, int], str]:
    """(width, height) and mode of a fully decoded image; raises ValueError naming the file."""
    try:
        with Image.open(path) as image:
            image.load()   # decodes every byte: a truncated file fails here, not during training
            return image.size, image.mode
    except (OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot be read as an image ({type(e).__name__}: {e})") from None


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def load_folder(root: str | Path, resize: int | None = None, skip_bad: bool = False) -> UserData:
    """An ``ImageFolder``: every image decoded once to check it; all must share one size unless
    ``resize`` (the side of a square) is given. Grey images stay one channel, others become RGB."""
    from torchvision import datasets, transforms as T

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (give a folder with one sub-folder per class)")
    if not any(p.is_dir() for p in root.iterdir()):
        raise ValueError(f"{root} has no class folders: put each class's images in a sub-folder named after it")
    try:
        folder = datasets.ImageFolder(str(root))
    except FileNotFoundError as e:
        raise ValueError(f"{root}: {e}") from None
    sizes, modes, bad, keep = {}, set(), [], []
    for path, label in folder.samples:
        try:
            size, mode = _image_size(path)
        except ValueError as e:
            if not skip_bad:
                raise ValueError(f"{e}; fix or remove it, or pass --skip-bad to leave such files out") from None
            bad.append(path)
            continue
        sizes.setdefault(size, path)
        modes.add(mode)
        keep.append((path, label))
    if not keep:
        raise ValueError(f"{root}: no readable image")
    if len(sizes) > 1 and resize is None:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise ValueError(f"{root}: images of different sizes ({a[0]}x{a[1]} {pa}, {b[0]}x{b[1]} {pb}, ...); "
                         "pass --resize N to scale them all to N x N")
    grey = modes <= {"L", "1", "I;16", "I"}
    steps = [T.Grayscale(1)] if grey else [T.Lambda(_rgb)]
    steps += [T.Resize((resize, resize))] if resize else []
    folder.transform = T.Compose(steps + [T.ToTensor()])
    folder.samples = folder.imgs = keep
    folder.targets = [label for _, label in keep]
    width, height = (resize, resize) if resize else next(iter(sizes))
    return UserData(folder, list(folder.classes), [p for p, _ in keep], np.asarray(folder.targets),
                    (1 if grey else 3, height, width), bad)


def load_npz(path: str | Path) -> UserData:
    """``x``: images (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 (0-255) or float (0-1);
    ``y``: labels 0 .. C-1. Optional ``classes``: the class names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        arrays = np.load(path, allow_pickle=False)
        x, y = arrays["x"], arrays["y"]
        names = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else None
    except KeyError:
        raise ValueError(f"{path} must hold arrays named x (images) and y (labels)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read as .npz ({e})") from None
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} images and y {len(y)} labels; both must be equal and non-zero")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise ValueError(f"{path}: x must be (N, H, W), (N, H, W, C) or (N, C, H, W), got {x.shape}")
    images = torch.from_numpy(np.ascontiguousarray(x)).float()
    if x.dtype == np.uint8:
        images /= 255
    labels = np.asarray(y).astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"{path}: labels must be 0 .. C-1, found {labels.min()}")
    classes = names or [str(c) for c in range(int(labels.max()) + 1)]
    return UserData(TensorDataset(images, torch.from_numpy(labels)), classes, [f"{path.name}[{i}]" for i in range(len(x))],
                    labels, tuple(images.shape[1:]), [])


def load_user_data(path: str | Path, resize: int | None = None, skip_bad: bool = False) -> UserData:
    """A folder (``ImageFolder``) or an ``.npz`` file."""
    return load_npz(path) if str(path).endswith(".npz") else load_folder(path, resize, skip_bad)


def check_meta(train: UserData, meta: UserData) -> None:
    """The meta set must name the training set's classes, have images of each, and the same
    image shape; images it shares with the training set get a warning with their count."""
    if meta.classes != train.classes:
        raise ValueError(f"the meta set's classes {meta.classes} differ from the training set's {train.classes}: "
                         "both must have the same class folders")
    empty = sorted(set(range(len(train.classes))) - set(meta.labels.tolist()))
    if empty:
        raise ValueError(f"the meta set has no image of class(es) {[train.classes[c] for c in empty]}: "
                         "GDW's meta set needs every class")
    if meta.shape != train.shape:
        raise ValueError(f"the meta images are {meta.shape} (channels, height, width) and the training images "
                         f"{train.shape}; give both the same size (--resize)")
    shared = len(set(map(_digest, train.paths)) & set(map(_digest, meta.paths))) if all(
        Path(p).is_file() for p in train.paths[:1] + meta.paths[:1]) else 0
    if shared:
        warnings.warn(f"{shared} meta image(s) are also in the training set (same file content): the meta set "
                      "should be a separate, checked set", stacklevel=2)


def _digest(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def write_image_folder(root: str | Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> list[Path]:
    """Write ``images`` (N, H, W) or (N, H, W, 3), uint8, as PNG files in the ImageFolder layout
    ``root/<class>/<i>.png`` (for examples and tests); returns the files in order."""
    root = Path(root)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / f"{i:06d}.png")
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(paths[-1])
    return paths
