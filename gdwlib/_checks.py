"""Input checks shared by the math modules: bad input raises a ValueError naming the argument."""
from __future__ import annotations

import torch
from torch import Tensor


class NumericalError(FloatingPointError, ValueError):
    """A tensor holds NaN or infinite values, or a formula would divide by zero. Inside training
    this means the run diverged; the trainer reports it with the epoch and iteration."""


def check_matrix(x: Tensor, name: str) -> None:
    """An (n, C) floating-point tensor without NaN or infinity."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"`{name}` must have shape (n, C), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got {x.dtype}")
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.any(dim=1).nonzero().flatten().tolist()[:5]
        raise NumericalError(f"`{name}` contains NaN or infinite values (rows {rows}...)")


def check_same_shape(x: Tensor, name: str, like: Tensor, like_name: str) -> None:
    check_matrix(x, name)
    if x.shape != like.shape:
        raise ValueError(
            f"`{name}` has shape {tuple(x.shape)} but `{like_name}` has shape {tuple(like.shape)}; "
            "they must match (one row per instance, one column per class)"
        )


def check_targets(targets: Tensor, n: int, num_classes: int, name: str = "targets") -> None:
    """Integer class labels, one per instance, each in [0, C)."""
    if not isinstance(targets, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(targets).__name__}")
    if targets.dim() != 1 or targets.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},) to match the batch, got {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold integer class indices, got {targets.dtype}")
    if n and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes}), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )


def check_probabilities(p: Tensor, name: str = "p") -> None:
    check_matrix(p, name)
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"`{name}` must hold probabilities in [0, 1]")
