"""Batched augmentation on tensors: reflect padding, a random crop back to size, a random
horizontal flip (the CIFAR recipe of the public code), then per-channel normalisation.

Working on whole batches keeps the CPU profile fast (no per-image PIL round trip); the
randomness comes from an explicit ``torch.Generator`` so an epoch can be replayed exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(x: Tensor, pad: int, generator: torch.Generator, flip: bool = True) -> Tensor:
    """Each image of ``x`` (n, c, h, w), reflect-padded by ``pad``, cropped at a random offset, maybe flipped."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device)[None, :, None, None]
    s = torch.tensor(std, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x - m) / s
