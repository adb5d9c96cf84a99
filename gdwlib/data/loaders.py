"""Training, meta and test sets given as ``torch.utils.data.Dataset``s, batched by DataLoaders
with samplers seeded from ``(seed, epoch, stream)``: the batching interface of
:class:`gdwlib.data.build.TrainingData` for data read from disk (Clothing1M, a user's image
folders), so that a resumed training draws the batches an uninterrupted one would have.

A training set yields ``(x, y, index)``; :class:`Indexed` adds the index to a Dataset that
yields ``(x, y)``.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from .augment import to_device
from .batches import Batch, generator


class Indexed(Dataset):
    """``dataset``'s ``(x, y)`` with the instance's position: ``(x, y, index)``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index][:2]
        return x, y, index


class LoaderData:
    """Batches of Datasets. ``true_labels`` (the training set's, where known, else -1) go into
    each training batch for the statistics; ``meta_plain`` is the meta set without augmentation
    (Fine-tuning, GLC), ``meta`` by default."""

    def __init__(self, train: Dataset, meta: Dataset, test: Dataset, *, num_classes: int, batch_size: int,
                 meta_batch_size: int, seed: int, device: torch.device | str = "cpu", workers: int | None = None,
                 true_labels=None, meta_plain: Dataset | None = None, augment: bool = True):
        self.train, self.meta, self.test, self.meta_plain = train, meta, test, meta_plain or meta
        self.num_classes, self.batch_size, self.meta_batch_size = num_classes, batch_size, meta_batch_size
        self.seed, self.device, self.augment = seed, torch.device(device), augment
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers
        self._true = None if true_labels is None else torch.as_tensor(np.asarray(true_labels), dtype=torch.long)
        self.noise_matrix = None
        self.info = {"train_size": len(train), "meta_size": len(meta), "test_size": len(test)}

    def _loader(self, dataset, batch_size: int, gen: torch.Generator | None):
        sampler = RandomSampler(dataset, generator=gen) if gen is not None else None
        # fork where there is one: a process started by spawn (a sweep's worker) would otherwise
        # spawn every loader's workers, each importing torch anew, at every epoch
        context = "fork" if self.workers and "fork" in multiprocessing.get_all_start_methods() else None
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.workers,
                          generator=gen, pin_memory=self.device.type == "cuda", multiprocessing_context=context)

    def _batches(self, loader, true: torch.Tensor | None, known: bool = True) -> Iterator[Batch]:
        """``true``: the true labels by index; else the labels are true (``known``) or unknown (-1)."""
        for x, y, idx in loader:
            y_true = true[idx] if true is not None else y if known else torch.full_like(y, -1)
            yield Batch(*(to_device(t, self.device) for t in (x, y, y_true, idx)))

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        loader = self._loader(self.train, self.batch_size, generator(self.seed, epoch, "train"))
        return self._batches(loader, self._true, known=False)

    def meta_batches(self, epoch: int) -> Iterator[Batch]:
        restart = 0
        while True:
            gen = generator(self.seed, epoch, f"meta/{restart}")
            yield from self._batches(self._loader(self.meta, self.meta_batch_size, gen), None)
            restart += 1

    def meta_epoch(self, epoch: int, augment: bool | None = None) -> Iterator[Batch]:
        dataset = self.meta if (self.augment if augment is None else augment) else self.meta_plain
        return self._batches(self._loader(dataset, self.batch_size, generator(self.seed, epoch, "meta-pass")), None)

    def ordered(self, dataset: Dataset, batch_size: int = 256) -> Iterator[Batch]:
        """``dataset`` (yielding ``(x, y, index)``) in order, in batches on the device."""
        return self._batches(self._loader(dataset, batch_size, None), None)

    def test_batches(self, batch_size: int = 256) -> Iterator[Batch]:
        return self.ordered(self.test, batch_size)

    def iterations_per_epoch(self) -> int:
        return -(-len(self.train) // self.batch_size)
