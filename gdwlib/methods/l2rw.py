"""L2RW, Learning to Reweight Examples (Ren et al. 2018): instance weights recomputed from
scratch in every iteration from the agreement between each training example's gradient and the
clean meta batch's gradient."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from ..bilevel import MetaMethod, meta_gradient, trainable_parameters
from ..data.batches import Batch
from ..gradients import D1
from .base import Method, check_finite, step_through_logits


def instance_meta_gradient(grad_G: Tensor, d1: Tensor) -> Tensor:
    """``dL_meta/deps_i = sum_c dL_meta/dG_ic D1_ic`` for the logit gradient ``G = eps (x) D1``."""
    return (grad_G * d1).sum(dim=1)


def linear_normalise(scores: Tensor, threshold: float = 0.0) -> Tensor:
    """``w = max(s, 0) / sum_j max(s_j, 0)``, or all zeros when that sum is ``<= threshold``."""
    clipped = scores.clamp(min=0)
    total = clipped.sum()
    return torch.where(total <= threshold, torch.zeros_like(clipped), clipped / total)   # decided on the device


def l2rw_weights(grad_eps: Tensor) -> Tensor:
    """Steps 4-5 of L2RW's Algorithm 1: ``w~_i = max(-dL_meta/deps_i, 0)``, ``w = w~ / sum w~``.

    At ``eps = 0`` the look-ahead is ``theta`` itself, so ``-dL_meta/deps_i`` is
    ``lr <grad l_i(theta), grad L_meta(theta)>``: an example gets weight only when its gradient
    points the way the clean batch's gradient does. When no example does, all weights are zero.
    """
    return linear_normalise(-grad_eps)


def l2rw_instance_weights(
    model: nn.Module, logits: Tensor, x: Tensor, y: Tensor, x_meta: Tensor, y_meta: Tensor, lr: float,
    *, method: MetaMethod = "jvp",
) -> tuple[Tensor, Tensor]:
    """The L2RW weights of the batch ``x`` (``logits = model(x)``) and the meta loss at ``theta``.

    ``dL_meta/dG`` comes from the shared primitive at ``G = 0``; no step is taken, so the
    look-ahead gradient ``J^T G`` is zero and needs no backward pass.
    """
    d1 = D1(logits.detach(), y)
    zero_step = {k: torch.zeros_like(p) for k, p in trainable_parameters(model).items()}
    mg = meta_gradient(model, x, torch.zeros_like(d1), x_meta, y_meta, lr, method=method, step_grads=zero_step,
                       logits=logits)
    return l2rw_weights(instance_meta_gradient(mg.grad_G, d1)), mg.meta_loss


class L2RW(Method):
    """Learning to Reweight Examples (Ren et al. 2018, Algorithm 1).

    Each iteration puts a weight ``eps_i = 0`` on every training example, differentiates the
    clean meta batch's loss after the look-ahead step with respect to ``eps`` (at ``eps = 0``
    the look-ahead is ``theta`` itself, so this is the inner product of each example's gradient
    with the meta gradient), clips at zero and normalises to sum 1. The real step sends
    ``w_i (p_i - y_i)`` into the logits: the weights already sum to 1, so there is no ``1/n``.
    Nothing is learned across iterations.

    Set-up for the GDW setting:
    the network, epochs, cosine schedule, SGD and meta batch (100 clean images) are GDW's. The
    clean-side gradient is that of the meta loss alone, as in the paper's Algorithm 1; the
    authors' TensorFlow code adds the weight-decay term to the clean cost before taking its
    gradient (``assigned_weights_resnet_model.py``). When every inner product is negative the
    weights are all zero, as in the code, and that step changes the network only through
    weight decay (and momentum). The look-ahead's step size is the current learning rate; it
    cancels in the normalisation.
    """

    name = "L2RW"
    revision = 2  # 2: J v read off the real forward's graph (gdwlib.tangents); equal up to rounding
    uses_meta = True

    def train_step(self, batch: Batch, meta: Iterator[Batch]) -> Tensor:
        m = next(meta)
        logits, loss = self.forward(batch)
        w, meta_loss = l2rw_instance_weights(self.model, logits, batch.x, batch.y, m.x, m.y, self.lr,
                                             method=self.config.meta_method)
        check_finite(meta_loss, "meta loss")
        step_through_logits(self.optimizer, logits, w[:, None] * D1(logits.detach(), batch.y))
        return loss
