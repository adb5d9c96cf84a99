"""Shared fixtures: small float64 networks and batches, built independently of gdwlib; the mark
of the tests that need CUDA; Fashion-MNIST-shaped stand-in files. It imports nothing that the
GPU machine lacks (torch, numpy and pytest only), as the CUDA tests run there."""
import numpy as np
import pytest
import torch
from torch import nn


def cuda_only(test):
    """A test that needs a CUDA device: skipped without one, and selected on a GPU machine by
    ``pytest -m cuda`` (``benchmarks/gpu_check.py --quick`` runs them; its ``CUDA_TEST_FILES``
    lists every file that has one)."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")(test))


def write_fashion_mnist_stand_in(directory, train: int = 500, test: int = 100, seed: int = 0):
    """Random 28x28 images with balanced labels in Fashion-MNIST's four idx files: for the tests
    that need the data set's shape, not its content, and must run where it is not installed."""
    from gdwlib.data.idx import write_idx

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("t10k", test)):
        write_idx(directory / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(directory / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return directory


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def small_convnet(num_classes: int = 5) -> nn.Module:
    """A conv net with BatchNorm (train mode) and a linear head: the case MetaModule rewrites exist for."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 4 * 4, num_classes),
    ).train()


@pytest.fixture
def convnet(float64):
    return small_convnet()


@pytest.fixture
def batches(float64):
    x = torch.randn(6, 1, 8, 8)
    y = torch.randint(0, 5, (6,))
    x_meta = torch.randn(7, 1, 8, 8)
    y_meta = torch.randint(0, 5, (7,))
    return x, y, x_meta, y_meta


def stop_in_evaluation(monkeypatch, at: int = 2):
    """Make the trainer's ``at``-th evaluation raise KeyboardInterrupt (a Ctrl-C mid-training: the
    checkpoint then holds ``at - 1`` epochs); returns the real ``evaluate``, to put back."""
    from gdwlib import train

    real, calls = train.evaluate, {"n": 0}

    def interrupt(model, batches):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(model, batches)

    monkeypatch.setattr(train, "evaluate", interrupt)
    return real


def interrupt_then_resume(monkeypatch, config, interrupt_at: int = 2) -> dict:
    """Run ``config``, stop it with Ctrl-C during its ``interrupt_at``-th evaluation (the checkpoint
    then holds ``interrupt_at - 1`` epochs), then run it again to the end; return that result."""
    from gdwlib import train

    real = stop_in_evaluation(monkeypatch, interrupt_at)
    with pytest.raises(KeyboardInterrupt):
        train.run(config, progress=False)
    directory = train.run_directory(config)
    assert torch.load(directory / "checkpoint.pt", weights_only=True)["epoch"] == interrupt_at - 1
    assert not (directory / "result.json").exists()
    monkeypatch.setattr(train, "evaluate", real)
    return train.run(config, progress=False)


def assert_same_run(config_a, config_b) -> None:
    """Two finished runs computed the same thing: history, final model, exported arrays."""
    import numpy as np

    from gdwlib import train

    a, b = train.find_result(config_a), train.find_result(config_b)
    for key in ("lr", "train_loss", "test_accuracy"):
        assert [h[key] for h in a["history"]] == [h[key] for h in b["history"]], key
    assert a["final_accuracy"] == b["final_accuracy"]
    dir_a, dir_b = train.run_directory(config_a), train.run_directory(config_b)
    sa, sb = (torch.load(d / "model.pt", weights_only=True) for d in (dir_a, dir_b))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    for name in ("exports.npz", "weights.npz"):
        assert (dir_a / name).exists() == (dir_b / name).exists()
        if (dir_a / name).exists():
            with np.load(dir_a / name) as fa, np.load(dir_b / name) as fb:
                assert set(fa) == set(fb)
                assert all(np.array_equal(fa[k], fb[k], equal_nan=True) for k in fa), name
