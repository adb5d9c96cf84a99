"""Shared fixtures: small float64 networks and batches, built independently of gdwlib."""
import pytest
import torch
from torch import nn


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
