"""Batched augmentation on tensors: reflect padding, a random crop back to size, a random
horizontal flip (the CIFAR recipe of the public code), then per-channel normalisation.

Working on whole batches keeps the CPU profile fast (no per-image PIL round trip); the
randomness comes from an explicit ``torch.Generator`` so an epoch can be replayed exactly.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(x: Tensor, pad: int, generator: torch.Generator, flip: bool = True) -> Tensor:
    """Each image of ``x`` (n, c, h, w), reflect-padded by ``pad``, cropped at a random offset, maybe flipped."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    top = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    left = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    if flip:
        mirror = to_device(torch.rand(n, generator=generator) < 0.5, x.device)
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """``t.to(device)`` without making the host wait: a CUDA copy goes from pinned memory,
    asynchronously (an ordinary copy from the host waits for the GPU's queue to drain)."""
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@lru_cache(maxsize=None)
def _channel_values(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A (1, c, 1, 1) tensor of per-channel values, made once per device rather than every batch."""
    return to_device(torch.tensor(values, dtype=dtype)[None, :, None, None], device)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    return (x - _channel_values(tuple(mean), x.dtype, x.device)) / _channel_values(tuple(std), x.dtype, x.device)
