"""INSW, learned per-instance weights (Hu et al. 2019, "Learning Data Manipulation for
Augmentation and Weighting"): one weight ``phi_i`` per training example, moved by the gradient
of the clean meta loss after a look-ahead step."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from ..bilevel import MetaMethod, meta_backward
from ..data.batches import Batch
from ..gradients import D1
from .base import Method, check_finite, step_through_logits
from ..reweighting import linear_normalise

PHI_FLOOR = 1e-5          # the authors' EPSILON: the lower clamp of phi
NORMALISE_THRESHOLD = 1e-8  # below this batch sum of phi the authors' code returns zero weights


def insw_meta_gradient(
    model: nn.Module, logits: Tensor, x: Tensor, y: Tensor, phi: Tensor, x_meta: Tensor, y_meta: Tensor,
    lr: float, *, method: MetaMethod = "jvp",
) -> tuple[Tensor, Tensor]:
    """``dL_meta(theta_hat)/dphi`` for ``theta_hat = theta - lr J^T (phi (x) D1)`` and the meta loss.

    ``theta_hat`` is ``theta`` plus the sum of the per-example steps ``-lr phi_i grad l_i``
    (no ``1/n``: each example takes its own full step, as in the authors' code). ``logits`` is
    ``model(x)`` with its graph, kept for the caller's real step.
    """
    phi = phi.detach().requires_grad_()
    G = phi[:, None] * D1(logits.detach(), y)
    mg = meta_backward(model, logits, x, G, x_meta, y_meta, lr, method=method)
    return phi.grad, mg.meta_loss


def insw_update(phi: Tensor, grad: Tensor, w_decay: float, meta_lr: float) -> Tensor:
    """The authors' update ``phi <- max(phi / w_decay - meta_lr dL_meta/dphi, 1e-5)``.

    ``w_decay`` divides the old weight (it is not an L2 coefficient); the authors' step size
    is 1 (at their learning rate 1e-3; see :class:`INSW`).
    """
    return (phi / w_decay - meta_lr * grad).clamp(min=PHI_FLOOR)


def insw_weights(phi: Tensor) -> Tensor:
    """The authors' ``linear`` normalisation over the batch, ``w = max(phi, 0) / sum max(phi, 0)``."""
    return linear_normalise(phi, NORMALISE_THRESHOLD)


class INSW(Method):
    r"""Learned instance weights (Hu et al. 2019).

    Each training example has a weight $\phi_i$ (one tensor over the training set). Per batch:
    a look-ahead $\hat\theta = \theta - \eta \sum_i \phi_i \nabla_\theta \ell_i$ at the learning rate $\eta$,
    the clean meta batch's loss at
    $\hat\theta$, its gradient $\partial L_{meta} / \partial \phi_i$ (through the shared meta-gradient primitive),
    then $\phi_i \leftarrow \max(\phi_i / d - \eta_\phi\, \partial L_{meta} / \partial \phi_i,\ 10^{-5})$ with
    $d$ = ``w_decay`` and $\eta_\phi$ = ``meta_lr``. The real step uses
    the updated weights at once, normalised over the batch: $w_i (\mathbf p_i - \mathbf y_i)$ with
    $w_i = \phi_i / \sum_j \phi_j$ (summing to 1, so no $1/n$).

    Set-up for the GDW setting:
    the authors fine-tune a pretrained ResNet-34 with SGD at lr 1e-3 (batch 20, 15 epochs);
    here the network, epochs, cosine schedule, SGD and meta batch are GDW's.
    ``init`` = 1.0 and ``w_decay`` = 2.0 come from the authors' CIFAR scripts
    (``--w_init 1. --w_decay 2.``; the argparse defaults are 0 and 10).
    The authors' meta step size is 1, at their SGD learning rate 1e-3. The meta-gradient
    $\partial L_{meta} / \partial \phi_i = -\eta \langle \nabla \ell_i, \nabla L_{meta}(\hat\theta) \rangle$
    is proportional to the SGD
    learning rate, so at GDW's 0.1 the same update is 100 times larger: on the CPU profile
    (Fashion-MNIST, 40% uniform noise, lr 0.1) a step of 1 moves $\phi$ by a median 0.58 per
    visit in the first epoch (from 1.0), clamps 32% of the weights at the floor, concentrates
    each batch's weight on about 45 of its 100 examples, and the test accuracy stays between
    22% and 34% from the second to the eighth of 12 epochs (one seed; 77% at the end, BaseModel
    83%). ``meta_lr`` = 0.01 keeps the authors'
    product of meta step and learning rate (1 x 1e-3): $\phi$ then starts near uniform, and
    as ``w_decay`` halves the old weight at every visit the meta-gradients take over after a
    few epochs (17% at the floor in the last epoch; 83% test accuracy at the end).
    The authors take one real optimiser step per example on a copy of the network, so each
    $\Delta_i$ also holds that step's momentum and weight-decay parts; here the look-ahead is
    the plain gradient step $-\eta \nabla \ell_i$, computed for the whole batch at once (the same
    one-step look-ahead as the other meta-learning methods here). The authors' code runs the
    look-ahead in eval mode (BatchNorm running statistics); here it uses the batch statistics,
    as the other meta-learning methods here do. The meta loss is that of one meta batch, not of
    the whole meta set, which would cost ten forward passes per iteration.
    """

    name = "INSW"
    revision = 2  # 2: J v read off the real forward's graph (gdwlib.tangents); equal up to rounding
    uses_meta = True
    options = {"init": 1.0, "w_decay": 2.0, "meta_lr": 0.01}
    instance_tensors = ("phi",)

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        self.phi = torch.full((len(data.train),), float(self.option("init")), device=device)

    def train_step(self, batch: Batch, meta: Iterator[Batch]) -> Tensor:
        m = next(meta)
        logits, loss = self.forward(batch)
        grad, meta_loss = insw_meta_gradient(self.model, logits, batch.x, batch.y, self.phi[batch.index], m.x, m.y,
                                             self.lr, method=self.config.meta_method)
        check_finite(meta_loss, "meta loss")
        phi = insw_update(self.phi[batch.index], grad, self.option("w_decay"), self.option("meta_lr"))
        check_finite(phi, "instance weights")
        self.phi[batch.index] = phi
        step_through_logits(self.optimizer, logits, insw_weights(phi)[:, None] * D1(logits.detach(), batch.y))
        return loss
