"""The zero-mean constraint on class-level weights (Section 3.3, Eq. 4-6).

Eq. 3 splits the manipulated gradient ``omega (x) (p - y)`` into a cross-entropy-shaped term
``omega_t (p' - y)`` and a term proportional to ``sum_k omega_k p_k - omega_t``. Choosing the
target weight ``omega_t`` so that this factor vanishes (Eq. 4) removes the second term. Then the
manipulated gradient sums to zero over classes (Eq. 5), like every softmax cross-entropy
gradient, and equals ``omega_t (p' - y)`` (Eq. 6).

Both functions take ``D1 = p - y`` (from :func:`gdwlib.gradients.D1`) rather than ``p``:
Eq. 4 written with it reads ``omega_t = sum_{j != t} omega_j D1_j / (-D1_t)``, so the
constraint holds exactly for the gradient that is actually sent back, clamped as in the public
code or not, and the accurate target entry of ``D1`` keeps it well defined as ``p_t -> 1``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import NumericalError, check_same_shape, check_targets, defer
from .gradients import weighted_probability


def target_weight(omega: Tensor, d1: Tensor, targets: Tensor) -> Tensor:
    """Eq. 4: ``omega_t = sum_{j != t} omega_j p_j / (1 - p_t)``, one value per instance.

    With an unclamped ``p`` this is the average of the non-target weights, weighted by how the
    model spreads its non-target probability; it therefore lies between their smallest and
    largest value, and stays finite as ``p_t -> 1``. With the public code's clamp
    (``p_t <= 0.999``) the denominator is at least 0.001, and an instance with ``p_t`` above
    0.999 gets ``omega_t`` shrunk by ``(1 - p_t) / 0.001``: its manipulated target flow
    ``omega_t (0.999 - 1)`` then equals the unclamped ``omega_t (p_t - 1)`` of the weighted
    average.

    Raises ``ValueError`` where ``p_t == 1`` exactly (no non-target probability left): Eq. 4
    is then 0/0.
    """
    check_same_shape(omega, "omega", d1, "d1")
    n, C = d1.shape
    check_targets(targets, n, C)
    y = F.one_hot(targets.long(), C).to(d1.dtype)
    denominator = -(d1 * y).sum(dim=1)  # 1 - p_t
    bad = denominator <= 0
    why = ("Eq. 4 divides by 1 - p_t, which is 0 there. The softmax has saturated; pass "
           "D1(logits, targets, clamp_max=0.999), the public code's clamp, or compute the logits in float64")
    if not defer(bad.any(), f"`d1` has p_t == 1 in some row: {why}") and bad.any():
        raise NumericalError(f"`d1` has p_t == 1 in rows {bad.nonzero().flatten().tolist()[:5]}: {why}")
    return (omega * d1 * (1 - y)).sum(dim=1) / denominator


def zero_mean_constraint(omega: Tensor, d1: Tensor, targets: Tensor) -> Tensor:
    """Eq. 4: ``omega`` with each target entry replaced by :func:`target_weight`.

    Non-target weights are returned unchanged. Afterwards ``sum_j omega_j D1_j = 0`` for every
    instance (Eq. 5) and ``omega (x) D1 = omega_t (p' - y)`` (Eq. 6). The result is
    differentiable in ``omega``: the public code applies the constraint inside the Step-1 graph,
    so the weighting network's gradient flows through it.
    """
    omega_t = target_weight(omega, d1, targets)
    is_target = F.one_hot(targets.long(), d1.shape[1]).bool()
    return torch.where(is_target, omega_t[:, None], omega)


def figure1_flows(p: Tensor, target: int, omega: Tensor, w: float) -> dict[str, Tensor]:
    """One instance's class-level flows under instance and class-level weighting (Figure 1).

    ``p`` is the instance's probability vector (length C), ``target`` its label, ``omega`` its
    class-level weights (the target entry is ignored: Eq. 4 sets it) and ``w`` an instance
    weight to compare with. Returns, in reading order, the rows of the worked example:
    ``D1 = p - y`` (Eq. 1), the instance-weighted ``w D1`` (every flow scaled alike),
    the constrained weights (Eq. 4), the manipulated ``omega (x) D1`` (Eq. 2), the weighted
    probability ``p'`` and ``omega_t (p' - y)``, equal to the row before (Eq. 6).
    """
    p, targets = p[None], torch.tensor([target])
    y = F.one_hot(targets, p.shape[1]).to(p.dtype)
    d1 = p - y
    constrained = zero_mean_constraint(omega[None].to(p.dtype), d1, targets)
    p_prime = weighted_probability(constrained, p)
    rows = {"p": p, "y": y, "D₁ = p − y": d1, "w D₁ (one weight)": w * d1, "ω (Eq. 4)": constrained,
            "ω ⊗ D₁ (Eq. 2)": constrained * d1, "p′": p_prime,
            "ω_t (p′ − y) (Eq. 6)": constrained[:, target] * (p_prime - y)}
    return {name: row[0] for name, row in rows.items()}
