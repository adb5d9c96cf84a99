"""No host-device synchronisation inside a training iteration.

On the CPU the check runs every method's ``train_step`` on ``meta`` tensors, which have shapes
but no data: anything that reads a value back to the host (``.item()``, ``float(t)``, ``if t:``,
``.cpu()``, ``.numpy()``, a boolean mask) raises there. On CUDA, where present, the same
iteration runs under ``torch.cuda.set_sync_debug_mode("error")``. The data are Fashion-MNIST-shaped
stand-ins, so that the file runs on a GPU machine without the data set.
"""
import numpy as np
import pytest
import torch
from torch import nn

from gdwlib._checks import deferred_checks
from gdwlib.data.build import build_data
from gdwlib.methods import METHODS, get_method
from gdwlib.profiles import profile_config
from gdwlib.stats import WeightStats

from conftest import cuda_only, write_fashion_mnist_stand_in

META = torch.device("meta")


def last_epoch_method(name: str, tmp_path, device: torch.device):
    """Method ``name`` of the smoke profile, set up for its last epoch (GLC's second phase, Gen-label
    after its warm-up), with its data on ``device``."""
    data_dir = write_fashion_mnist_stand_in(tmp_path / "fashion-mnist")
    config = profile_config("smoke", "fashion-mnist", results_dir=str(tmp_path), device="cpu", method=name,
                            data_dir=str(data_dir))
    method = get_method(name)(config, build_data(config, torch.device("cpu")), torch.device("cpu"))
    epoch = method.num_epochs() - 1
    method.start_epoch(epoch, method.learning_rate(epoch))   # once per epoch: may read from the device
    for key, value in list(vars(method).items()):
        if isinstance(value, nn.Module):
            value.to(device)                   # in place: the optimisers keep their parameters
        elif isinstance(value, torch.Tensor):
            setattr(method, key, value.to(device))
    method.data, method.device = build_data(config, device), device
    if method.records_weights:
        method.stats = WeightStats(len(method.data.train), method.num_classes, np.arange(4), device)
        method.stats.start_epoch(epoch)
    meta = method.data.meta_batches(epoch) if method.uses_meta else None
    return method, iter(method.batches(epoch)), meta


@pytest.mark.parametrize("name", sorted(METHODS))
def test_an_iteration_reads_nothing_back_from_the_device(tmp_path, name):
    method, batches, meta = last_epoch_method(name, tmp_path, META)
    with deferred_checks():
        loss = method.train_step(next(batches), meta)
    assert loss.device == META and loss.dim() == 0


def test_the_meta_device_catches_a_read(tmp_path, monkeypatch):
    """The harness above fails a method that reads its loss back, as the old code did."""
    method, batches, _ = last_epoch_method("BaseModel", tmp_path, META)
    real = type(method).train_step
    monkeypatch.setattr(type(method), "train_step", lambda self, b, m: real(self, b, m).item())
    with deferred_checks(), pytest.raises((RuntimeError, NotImplementedError)):
        method.train_step(next(batches), None)


@cuda_only
@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_cuda_iteration_does_not_synchronise(tmp_path, name):
    method, batches, meta = last_epoch_method(name, tmp_path, torch.device("cuda"))
    with deferred_checks():
        method.train_step(next(batches), meta)   # the first step may allocate and initialise lazily
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            method.train_step(next(batches), meta)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_cifar_batches_are_augmented_on_the_device_without_a_dataloader(tmp_path, monkeypatch):
    """CIFAR's splits live on the device as tensors; an epoch's batches (crop, flip, normalise)
    are made there, with no DataLoader in the loop (the hot loop of the paper's Tables 2-4)."""
    from gdwlib.data.standin import write_stand_ins

    write_stand_ins(tmp_path / "data")

    def refuse(self):
        raise AssertionError("a DataLoader was iterated")

    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__", refuse)
    for dataset in ("cifar10", "cifar100"):
        config = profile_config("paper", dataset, "rehearsal", data_dir=str(tmp_path / "data"), results_dir=str(tmp_path),
                                device="cpu", method="GDW")
        data = build_data(config, META)
        assert data.train.images.device == META and data.train.images.dtype == torch.uint8
        batch, meta = next(iter(data.train_batches(0))), next(data.meta_batches(0))
        assert batch.x.device == META and batch.x.shape[1:] == (3, 32, 32) and data.pipeline.pad > 0
        assert meta.x.device == META and meta.y.device == META
