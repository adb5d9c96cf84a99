"""Focal and Balanced: fixed re-weightings of cross-entropy, each defined by the ``(n, C)``
matrix it sends into the logits (see :class:`~gdwlib.methods.base.LogitGradientMethod`).

Both turn out to be instance weighting of ``p - y``: the focal gradient is ``(p - y)`` times a
per-instance factor that depends on ``p_t``, the class-balanced one is ``(p - y)`` times a
per-class constant ``w_y``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.batches import Batch
from ..gradients import D1
from .base import LogitGradientMethod


def _check_gamma(gamma: float) -> None:
    if not gamma >= 0:
        raise ValueError(f"the focal exponent gamma must be >= 0, got {gamma}")


def _target_terms(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``p_t``, ``q = 1 - p_t`` and ``log p_t``, each accurate both as ``p_t -> 1`` and ``p_t -> 0``.

    ``q`` is summed over the other classes (``1 - p_t`` rounds to 0 once ``p_t`` is within an ulp
    of 1) and ``log p_t = log1p(-q)`` where ``q`` is small (``log_softmax`` rounds it to 0 there),
    ``log_softmax`` elsewhere (where ``log1p(-q)`` would lose a tiny ``p_t``).
    """
    t = targets.long()[:, None]
    p = torch.softmax(logits, dim=1)
    p_t = p.gather(1, t).squeeze(1)
    q = p.scatter(1, t, 0.0).sum(dim=1)
    small = q < 0.5
    log_p_t = torch.where(small, torch.log1p(-torch.where(small, q, torch.zeros_like(q))),
                          torch.log_softmax(logits, dim=1).gather(1, t).squeeze(1))
    return p_t, q, log_p_t


def focal_loss(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """Per-instance softmax focal loss ``FL = -(1 - p_t)^gamma log p_t`` (cross-entropy at gamma = 0)."""
    _check_gamma(gamma)
    _, q, log_p_t = _target_terms(logits, targets)
    return -q.pow(gamma) * log_p_t


def focal_logit_gradient(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """``dFL/dz_k = [gamma (1-p_t)^(gamma-1) p_t log p_t - (1-p_t)^gamma] (delta_ky - p_k)``, one row per instance.

    Written as instance weighting of cross-entropy's ``p - y``:
    ``dFL/dz = (1-p_t)^gamma (1 - gamma p_t log(p_t) / (1-p_t)) (p - y)``.
    The ratio ``log(p_t) / (1-p_t)`` tends to -1 as ``p_t -> 1``, so the factor stays finite
    there for every gamma >= 0 (the closed form's ``(1-p_t)^(gamma-1)`` alone diverges for
    gamma < 1); at ``p_t = 1`` exactly the ratio is set to its limit -1.
    """
    _check_gamma(gamma)
    p_t, q, log_p_t = _target_terms(logits, targets)
    ratio = torch.where(q > 0, log_p_t / torch.where(q > 0, q, torch.ones_like(q)), -torch.ones_like(q))
    factor = q.pow(gamma) * (1 - gamma * p_t * ratio)
    return factor[:, None] * D1(logits, targets)


def class_balanced_weights(counts: Sequence[int] | np.ndarray, beta: float) -> Tensor:
    """Cui et al.'s class weights ``w_c = (1 - beta) / (1 - beta^{n_c})``, normalised to mean 1.

    ``(1 - beta^n) / (1 - beta)`` is the "effective number" of n examples, so ``w_c`` is its
    inverse. The weights are rescaled to sum to the number of classes (as the authors' code
    does), which makes ``beta = 0`` the plain loss. A class with no examples has effective
    number 0 and would get an infinite weight; since it never is a training target, its weight
    is never used: it is set to 0 and the others are rescaled to sum to the number of classes
    that have examples. Returns a float64 tensor of length C.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must lie in [0, 1), got {beta}")
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    if n.dim() != 1 or (n < 0).any():
        raise ValueError(f"counts must be a vector of non-negative class counts, got {counts}")
    present = n > 0
    if not present.any():
        raise ValueError("counts has no class with examples")
    w = torch.zeros_like(n)
    w[present] = (1 - beta) / (1 - beta ** n[present])
    return w * present.sum() / w.sum()


class Focal(LogitGradientMethod):
    r"""Focal loss (Lin et al. 2017) in its multi-class softmax form, $\mathrm{FL} = -(1 - p_t)^\gamma \log p_t$,
    sent into the logits as $G_i = \partial \mathrm{FL}_i / \partial \mathbf z_i / n$.

    Set-up for the GDW setting:

    - Softmax focal loss without the class factor $\alpha_t$: the GDW paper's tables are image
      classification, where the softmax form is the usual one; Lin et al.'s per-class sigmoid
      form (with $\alpha = 0.25$ and a bias prior) belongs to dense detection, and the
      class-balanced code's sigmoid focal loss needs its own bias initialisation. GDW does not
      say which form it used.
    - ``gamma`` $= \gamma$ = 1.0 (option), the default of Cui et al.'s class-balanced code, the public code
      closest to GDW's CIFAR experiments that implements focal loss; Lin et al.'s detection
      value is $\gamma = 2$ (``--set option.gamma=2``). GDW does not state $\gamma$.
    - Same network, optimiser, epochs and cosine schedule as BaseModel; the training loss
      recorded per epoch is plain cross-entropy, as for every method.
    """

    name = "Focal"
    options = {"gamma": 1.0}

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        _check_gamma(self.option("gamma"))

    def logit_gradient(self, logits: Tensor, batch: Batch) -> Tensor:
        return focal_logit_gradient(logits, batch.y, self.option("gamma")) / len(batch)


class Balanced(LogitGradientMethod):
    r"""Class-balanced softmax cross-entropy (Cui et al. 2019): instance i's cross-entropy is weighted
    by its class's $w_{y_i}$, so $G_i = w_{y_i} (\mathbf p_i - \mathbf y_i) / n$.

    Set-up for the GDW setting:

    - Softmax variant with ``beta`` $= \beta$ = 0.9999 (option), the value of the authors' class-balanced
      CIFAR script; the paper picks beta and the variant (softmax, sigmoid, focal) per data set
      from a grid, and GDW does not say which it used.
    - Weights $w_c = (1 - \beta) / (1 - \beta^{n_c})$ renormalised to sum to $C$, with $n_c$ the
      count of training *labels* (the noisy ones where there is noise: what the learner sees),
      computed once from the training set. Under balanced label noise all counts are about
      equal and Balanced is close to BaseModel.
    - The loss is divided by the batch size, as TensorFlow's default reduction in the authors'
      code does. Same network, optimiser and schedule as BaseModel.
    """

    name = "Balanced"
    options = {"beta": 0.9999}

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        weights = class_balanced_weights(data.class_counts(), self.option("beta"))
        self.class_weights = weights.to(device=device, dtype=torch.float32)

    def logit_gradient(self, logits: Tensor, batch: Batch) -> Tensor:
        return self.class_weights[batch.y][:, None] * D1(logits, batch.y) / len(batch)
