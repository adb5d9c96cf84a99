"""From a run's config to its three splits: a (noisy or long-tailed) training set, a clean and
balanced meta set, and the test set, with the true labels kept beside the training labels.

Order of operations: the meta set is drawn first (balanced, clean, as in the public code), the
rest may then be subsampled (CPU budgets) and made long-tailed (by true label), and finally the
remaining training labels are corrupted. The public code corrupts the whole training split first
and subsamples the long tail afterwards. Because the long tail is chosen by true label and each
label is corrupted independently of the others, both orders give the same distribution of
(image, true label, noisy label); only which images end up noisy differs. (The paper's long-tail
table has no label noise anyway.)

Random draws: the split, the subsets and the corruption all come from one generator seeded by
the run's seed. For flip noise, the public code re-seeds NumPy's global generator with 1 when it
builds the flip matrix, so its per-label draws form a fixed stream and the number of flipped
labels per class is the same for every seed. Here the flip matrix (which class moves to which)
is fixed by seed 1 as in the code, but the per-label draws come from the run's seed, so the
flipped images and their number per class vary with the seed, as they do for uniform noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from ..config import RunConfig
from .batches import Batch, Pipeline, Split, endless_batches, epoch_batches, ordered_batches, stream_seed
from .cifar import find_cifar, load_cifar
from .clothing1m import NUM_CLASSES as CLOTHING_CLASSES
from .clothing1m import Clothing1M, clothing1m_root
from .fashion_mnist import fashion_mnist_files, load_fashion_mnist
from .loaders import LoaderData
from .longtail import longtail_counts, longtail_indices
from .noise import corrupt_labels, flip_noise_matrix, uniform_noise_matrix
from .split import meta_split, overlapping_meta_split

CIFAR_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
CIFAR_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)   # over the 60,000 training images
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class TrainingData:
    """The three splits of a run and how to batch them."""

    train: Split
    meta: Split
    test: Split
    num_classes: int
    pipeline: Pipeline
    config: RunConfig
    noise_matrix: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    train_source: np.ndarray | None = None   # index of each training image in the data set's own training split
    meta_source: np.ndarray | None = None    # the same for the meta images

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        c = self.config
        return epoch_batches(self.train, c.batch_size, self.pipeline, c.seed, epoch, "train", c.augment)

    def meta_batches(self, epoch: int) -> Iterator[Batch]:
        c = self.config
        return endless_batches(self.meta, c.meta_batch_size, self.pipeline, c.seed, epoch, "meta", c.augment)

    def meta_epoch(self, epoch: int, augment: bool | None = None) -> Iterator[Batch]:
        """One shuffled pass over the meta set (Fine-tuning, GLC)."""
        c = self.config
        aug = c.augment if augment is None else augment
        return epoch_batches(self.meta, c.batch_size, self.pipeline, c.seed, epoch, "meta-pass", aug)

    def test_batches(self, batch_size: int = 500) -> Iterator[Batch]:
        return ordered_batches(self.test, batch_size, self.pipeline)

    def iterations_per_epoch(self) -> int:
        return -(-len(self.train) // self.config.batch_size)

    def class_counts(self) -> np.ndarray:
        """Training examples per (training) label."""
        return np.bincount(self.train.labels.cpu().numpy(), minlength=self.num_classes)


def _as_nchw(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    return x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()


def _load(config: RunConfig):
    """Both splits, the input pipeline and the files they were read from."""
    if config.dataset == "fashion-mnist":
        load = lambda split: load_fashion_mnist(split, config.data_dir)  # noqa: E731
        files = [str(f) for split in ("train", "test") for f in fashion_mnist_files(split, config.data_dir)]
        return load("train"), load("test"), Pipeline(FASHION_MEAN, FASHION_STD, pad=2), files
    load = lambda split: load_cifar(config.dataset, split, config.data_dir)  # noqa: E731
    return load("train"), load("test"), Pipeline(CIFAR_MEAN, CIFAR_STD, pad=4), [str(find_cifar(config.dataset,
                                                                                               config.data_dir))]


def noise_matrix(config: RunConfig) -> np.ndarray | None:
    C = config.num_classes
    if config.noise == "uniform":
        return uniform_noise_matrix(C, config.ratio, config.noise_variant)
    if config.noise == "flip":
        return flip_noise_matrix(C, config.ratio, seed=1)
    return None


def build_data(config: RunConfig, device: torch.device | str = "cpu") -> "TrainingData | Clothing1MData":
    """The splits of ``config``'s data set, on ``device``, behind one batching interface."""
    if config.dataset == "clothing1m":
        return Clothing1MData(config, device)
    (images, labels), (test_images, test_labels), pipeline, files = _load(config)
    C, seed = config.num_classes, config.seed
    rng = np.random.RandomState(stream_seed(seed, 0, "data") % 2**32)
    if config.meta_overlap:
        meta_idx, train_idx = overlapping_meta_split(labels, config.meta_per_class, meta_seed=1, train_seed=seed)
    else:
        meta_idx, train_idx = meta_split(labels, config.meta_per_class, rng)
    if config.train_size is not None and config.train_size < len(train_idx):
        keep, _ = meta_split(labels[train_idx], config.train_size // C, rng)  # a balanced subset
        train_idx = train_idx[np.sort(keep)]
    if config.imbalance < 1:
        counts = longtail_counts(len(train_idx) / C, C, config.imbalance)
        train_idx = train_idx[longtail_indices(labels[train_idx], counts, rng)]
    true = labels[train_idx]
    empty = np.flatnonzero(np.bincount(true, minlength=C) == 0)
    if empty.size:
        raise ValueError(f"the training set of this config has no image of class(es) {empty.tolist()} "
                         f"(train_size={config.train_size}, imbalance={config.imbalance}); use a larger train_size "
                         "or a larger imbalance factor")
    matrix = noise_matrix(config)
    noisy = corrupt_labels(true, matrix, rng) if matrix is not None else true.copy()

    def split(idx_images, lab, true_lab):
        return Split(_as_nchw(idx_images), torch.from_numpy(lab).long(), torch.from_numpy(true_lab).long()).to(device)

    info = {
        "train_size": len(train_idx), "meta_size": len(meta_idx), "test_size": len(test_labels),
        "noise_rate": float((noisy != true).mean()) if len(true) else 0.0,
        "train_class_counts": np.bincount(true, minlength=C).tolist(),
        "meta_in_train": int(np.isin(meta_idx, train_idx).sum()),
        "files": files,
    }
    return TrainingData(
        train=split(images[train_idx], noisy, true),
        meta=split(images[meta_idx], labels[meta_idx], labels[meta_idx]),
        test=split(test_images, test_labels, test_labels),
        num_classes=C, pipeline=pipeline, config=config, noise_matrix=matrix, info=info,
        train_source=train_idx, meta_source=meta_idx,
    )


class Clothing1MData(LoaderData):
    """Clothing1M read from disk by DataLoaders: noisy training split, clean validation as the meta
    set (MW-Net's convention), clean test split. Same batching interface as :class:`TrainingData`."""

    def __init__(self, config: RunConfig, device: torch.device | str = "cpu", workers: int | None = None):
        from torchvision import transforms as T

        if not config.data_dir:
            raise ValueError("Clothing1M needs --data-dir (or data_dir): the directory holding its files")
        norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_tf = T.Compose([T.Resize(256), T.RandomCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        test_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
        root = clothing1m_root(config.data_dir)
        train = Clothing1M(root, "noisy_train", train_tf)
        super().__init__(train, Clothing1M(root, "clean_val", train_tf), Clothing1M(root, "clean_test", test_tf),
                         num_classes=CLOTHING_CLASSES, batch_size=config.batch_size,
                         meta_batch_size=config.meta_batch_size, seed=config.seed, device=device, workers=workers,
                         true_labels=train.true_labels, meta_plain=Clothing1M(root, "clean_val", test_tf),
                         augment=config.augment)
        self.config = config

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, 224, 224)

    def class_counts(self) -> np.ndarray:
        return np.bincount(np.asarray(self.train.labels), minlength=self.num_classes)
