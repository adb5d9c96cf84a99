"""Class-level gradient manipulation (Section 3.2, Eq. 1-3).

For softmax cross-entropy the gradient of an instance's loss factors as ``D1 @ D2`` (Eq. 1):
``D1 = dL/dlogits = p - y`` is a row of C numbers, one per *gradient flow*, and
``D2 = dlogits/dtheta`` is the network's Jacobian. GDW multiplies each flow by its own
class-level weight (Eq. 2). Because only ``D1`` changes, the manipulated gradient is obtained by
back-propagating the ``(n, C)`` matrix ``omega * D1 / n`` from the logits: one ordinary backward
pass, whatever the network.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import NumericalError, check_matrix, check_probabilities, check_same_shape, check_targets, defer


def D1(logits: Tensor, targets: Tensor, *, clamp_max: float | None = None) -> Tensor:
    """Eq. 1: ``D1 = dL/dlogits = p - y`` for softmax cross-entropy, one row per instance.

    ``clamp_max`` reproduces the public GDW code, which clamps ``p`` at 0.999 before
    subtracting ``y`` (``None``, the default here, is the paper's plain ``p - y``).

    The target entry ``p_t - 1`` is computed as ``-sum_{j != t} p_j``: the same number, but
    without the cancellation that makes ``p_t - 1`` round to 0 in float32 once ``p_t`` is
    within about 6e-8 of 1. The zero-mean constraint divides by this entry
    (see :func:`gdwlib.constraint.target_weight`), so it must stay accurate there.
    """
    check_matrix(logits, "logits")
    n, C = logits.shape
    check_targets(targets, n, C)
    if clamp_max is not None and not 0.0 < clamp_max <= 1.0:
        raise ValueError(f"`clamp_max` must lie in (0, 1], got {clamp_max}")
    p = torch.softmax(logits, dim=1)
    y = F.one_hot(targets.long(), C).to(p.dtype)
    rest = (p * (1 - y)).sum(dim=1)  # 1 - p_t, computed without cancellation
    if clamp_max is not None:
        p = p.clamp(max=clamp_max)
        rest = torch.maximum(rest, torch.full_like(rest, 1.0 - clamp_max))
    return p * (1 - y) - rest[:, None] * y


def f_omega(omega: Tensor, d1: Tensor) -> Tensor:
    """Eq. 2: the manipulated logit gradient ``D1' = omega (x) D1`` (element-wise).

    ``omega[i, j]`` scales the j-th gradient flow of instance i. With all C weights of a row
    equal to ``w_i`` this is instance weighting with weight ``w_i``.
    """
    check_same_shape(omega, "omega", d1, "d1")
    return omega * d1


def logit_backward(
    logits: Tensor, grad_logits: Tensor, params: Iterable[Tensor], *, retain_graph: bool = False,
    create_graph: bool = False,
) -> tuple[Tensor, ...]:
    """``D2^T G``: the parameter gradient obtained by sending ``G = grad_logits`` into the logits.

    This is the single primitive every method of the paper's tables shares: BaseModel sends
    ``(p - y) / n``, instance weighting ``w (p - y) / n``, GDW ``omega' (x) (p - y) / n``.
    """
    check_same_shape(grad_logits, "grad_logits", logits, "logits")
    return torch.autograd.grad(
        logits, tuple(params), grad_outputs=grad_logits, retain_graph=retain_graph,
        create_graph=create_graph,
    )


def manipulated_gradient(
    model: nn.Module, x: Tensor, targets: Tensor, omega: Tensor, *, clamp_max: float | None = None,
) -> dict[str, Tensor]:
    """Eq. 2 for a batch: the gradient ``(1/n) sum_i (omega_i (x) D1_i) D2_i`` of every parameter.

    Returns a dict keyed like ``model.named_parameters()``; the model's ``.grad`` fields are
    left untouched.
    """
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    logits = model(x)
    d1 = D1(logits.detach(), targets, clamp_max=clamp_max)
    grads = logit_backward(logits, f_omega(omega, d1) / logits.shape[0], [p for _, p in named])
    return {k: g for (k, _), g in zip(named, grads)}


def weighted_probability(omega: Tensor, p: Tensor) -> Tensor:
    """The weighted probability ``p'_j = omega_j p_j / sum_k omega_k p_k`` of Eq. 3."""
    check_probabilities(p)
    check_same_shape(omega, "omega", p, "p")
    z = (omega * p).sum(dim=1, keepdim=True)
    if not defer((z <= 0).any(), "`omega` gives sum_k omega_k p_k <= 0 in some row: p' is undefined there") \
            and (z <= 0).any():
        rows = (z.flatten() <= 0).nonzero().flatten().tolist()[:5]
        raise NumericalError(
            f"`omega` gives sum_k omega_k p_k <= 0 in rows {rows}: p' is defined only for "
            "weights whose p-weighted sum is positive (non-negative weights, not all zero)"
        )
    return omega * p / z


def eq3_terms(omega: Tensor, p: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """The two terms of Eq. 3, whose sum is ``omega (x) (p - y)``.

    ``first = omega_t (p' - y)`` has the structure of a softmax cross-entropy gradient (with
    probabilities ``p'``); ``second = (sum_k omega_k p_k - omega_t) p'`` is the term that the
    zero-mean constraint removes.
    """
    n, C = p.shape
    check_targets(targets, n, C)
    p_prime = weighted_probability(omega, p)
    y = F.one_hot(targets.long(), C).to(p.dtype)
    omega_t = omega.gather(1, targets.long()[:, None])
    first = omega_t * (p_prime - y)
    second = ((omega * p).sum(dim=1, keepdim=True) - omega_t) * p_prime
    return first, second
