"""Input checks shared by the math modules: bad input raises a ValueError naming the argument.

A check of tensor *values* (NaN, infinity, labels out of range) reads a number back from the
device, and on a GPU every such read stalls the queue of work until it drains. Inside
:func:`deferred_checks` the value checks are recorded on the device instead, and
:meth:`DeferredChecks.raise_if_failed` reads them all at once (the trainer does so every few dozen
iterations and at the end of each epoch), raising for the first one that failed with the
iteration it failed in. Checks of shapes and types never touch the data and always raise at once.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
from torch import Tensor


class NumericalError(FloatingPointError, ValueError):
    """A tensor holds NaN or infinite values, or a formula would divide by zero. Inside training
    this means the run diverged; the trainer reports it with the epoch and iteration."""

    def __init__(self, message: str, iteration: int | None = None):
        super().__init__(message)
        self.iteration = iteration   # set by deferred checks: the iteration (from 1) that failed


class DeferredChecks:
    """Value checks recorded on the device, read in one go (see the module docstring)."""

    def __init__(self) -> None:
        self.iteration = 0   # the caller's count, stored with each check
        self._pending: list[tuple[int, str, type[Exception], Tensor]] = []

    def record(self, bad: Tensor, message: str, error: type[Exception] = NumericalError) -> None:
        self._pending.append((self.iteration, message, error, bad.reshape(())))

    def raise_if_failed(self) -> None:
        """Read every recorded check (one transfer from the device) and raise a
        :class:`NumericalError` for the first that failed."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        failed = torch.stack([bad for *_, bad in pending]).nonzero().flatten().tolist()
        if failed:
            iteration, message, error, _ = pending[failed[0]]
            if error is NumericalError:
                raise NumericalError(message, iteration)
            raise error(f"{message} (in iteration {iteration})")


_deferred: ContextVar[DeferredChecks | None] = ContextVar("deferred_checks", default=None)


@contextmanager
def deferred_checks() -> Iterator[DeferredChecks]:
    """Record value checks made inside the block instead of raising at once."""
    checks = DeferredChecks()
    token = _deferred.set(checks)
    try:
        yield checks
    finally:
        _deferred.reset(token)


def defer(bad: Tensor, message: str, error: type[Exception] = NumericalError) -> bool:
    """Inside :func:`deferred_checks`, record the 0-dim boolean ``bad`` (to be raised as ``error``
    with ``message``) and return True: the caller skips its own test. Outside, return False."""
    checks = _deferred.get()
    if checks is None:
        return False
    checks.record(bad, message, error)
    return True


class NonFiniteLossError(NumericalError):
    """The loss (or the gradient sent back) became NaN or infinite."""


def check_finite(value: Tensor, what: str = "loss") -> None:
    """``value`` holds no NaN or infinity (deferred inside :func:`deferred_checks`)."""
    bad = ~torch.isfinite(value).all()
    if not defer(bad, f"the {what} is NaN or infinite") and bad:
        raise NonFiniteLossError(f"the {what} is {'NaN' if torch.isnan(value).any() else 'infinite'}")


def check_matrix(x: Tensor, name: str) -> None:
    """An (n, C) floating-point tensor without NaN or infinity."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"`{name}` must have shape (n, C), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got {x.dtype}")
    bad = ~torch.isfinite(x)
    if not defer(bad.any(), f"`{name}` contains NaN or infinite values") and bad.any():
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
    if n and not defer((targets.min() < 0) | (targets.max() >= num_classes), f"`{name}` must lie in [0, {num_classes})",
                     ValueError) \
            and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes}), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )


def check_probabilities(p: Tensor, name: str = "p") -> None:
    check_matrix(p, name)
    if not defer(((p < 0) | (p > 1)).any(), f"`{name}` must hold probabilities in [0, 1]", ValueError) \
            and ((p < 0).any() or (p > 1).any()):
        raise ValueError(f"`{name}` must hold probabilities in [0, 1]")
