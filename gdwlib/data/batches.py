"""Mini-batches of an in-memory split, replayable: every epoch's order and augmentation come
from generators seeded by ``(seed, epoch, stream)``, so a run resumed at an epoch boundary sees
exactly the batches an uninterrupted run would have seen, with no RNG state to checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from .augment import normalize, random_crop_flip, to_device


def stream_seed(seed: int, epoch: int, stream: str) -> int:
    """A 63-bit seed for one (run seed, epoch, purpose) triple."""
    words = [seed, epoch] + list(stream.encode())
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)[0] >> 1)


def generator(seed: int, epoch: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, epoch, stream))


@dataclass
class Batch:
    x: Tensor            # normalised images (n, c, h, w), float32, on the device
    y: Tensor            # the (possibly noisy) training labels
    y_true: Tensor       # the clean labels (equal to y where there is no noise)
    index: Tensor        # instance index into the training split

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Split:
    """Images as uint8 (N, c, h, w) plus labels, all on one device."""

    images: Tensor
    labels: Tensor
    true_labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device), self.true_labels.to(device))

    def subset(self, index) -> "Split":
        """The instances at positions ``index``, in that order."""
        keep = torch.as_tensor(index, device=self.labels.device)
        return Split(self.images[keep], self.labels[keep], self.true_labels[keep])


@dataclass
class Pipeline:
    """How raw uint8 images become network inputs."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0            # 0 disables augmentation
    flip: bool = True

    def __call__(self, images: Tensor, gen: torch.Generator | None) -> Tensor:
        x = images.float() / 255.0
        if gen is not None and self.pad > 0:
            x = random_crop_flip(x, self.pad, gen, self.flip)
        return normalize(x, self.mean, self.std)


def epoch_batches(split: Split, batch_size: int, pipeline: Pipeline, seed: int, epoch: int,
                  stream: str = "train", augment: bool = True) -> Iterator[Batch]:
    """One shuffled pass over ``split`` (the last batch may be smaller)."""
    order_gen = generator(seed, epoch, stream + "/order")
    aug_gen = generator(seed, epoch, stream + "/augment") if augment else None
    order = to_device(torch.randperm(len(split), generator=order_gen), split.labels.device)
    for start in range(0, len(split), batch_size):
        idx = order[start:start + batch_size]
        yield Batch(pipeline(split.images[idx], aug_gen), split.labels[idx], split.true_labels[idx], idx)


def endless_batches(split: Split, batch_size: int, pipeline: Pipeline, seed: int, epoch: int,
                    stream: str = "meta", augment: bool = True) -> Iterator[Batch]:
    """Meta batches as the public code draws them: a fresh shuffle each epoch, restarted when exhausted."""
    restart = 0
    while True:
        yield from epoch_batches(split, batch_size, pipeline, seed, epoch, f"{stream}/{restart}", augment)
        restart += 1


def ordered_batches(split: Split, batch_size: int, pipeline: Pipeline) -> Iterator[Batch]:
    """The split in order, without augmentation (evaluation)."""
    for start in range(0, len(split), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(split)), device=split.labels.device)
        yield Batch(pipeline(split.images[idx], None), split.labels[idx], split.true_labels[idx], idx)
