"""GDW, MW-Net and L2RW for any classifier: one object per method, whose :meth:`~Reweighter.step`
a training loop calls with a training batch and a batch of the clean meta set.

    gdw = gdwlib.GDW(model, torch.optim.Adam(model.parameters(), 1e-3), lookahead_lr=0.1)
    for x, y, index in loader:
        x_meta, y_meta = next(meta)
        loss = gdw.step(x, y, x_meta, y_meta, index=index)

A step is Algorithm 1 on the batch: the real forward (BatchNorm, if any, in train mode, updates
its statistics here, once), the look-ahead step and the meta gradient (Steps 1-2), then the real
update (Step 3) through ``optimizer``, which may be any :mod:`torch.optim` optimiser. The
look-ahead step stays plain SGD with step size ``lookahead_lr``, as in the paper and the public
code, where it is the current learning rate of the SGD that makes the real update; by default
it is read from ``optimizer``'s first parameter group at every step (so a scheduler's changes
count), which is what the book's runs do. With Adam, whose learning rates are a hundred times
smaller, give ``lookahead_lr`` (SGD's, e.g. 0.1): the look-ahead must move the network enough
for the meta loss to tell good weights from bad.

The book's runs (:mod:`gdwlib.methods`) call these same objects, so what a user runs is what the
book measures. Defaults are :class:`gdwlib.config.RunConfig`'s, the public code's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_finite
from .bilevel import (MetaMethod, StepRule, first_stage_weights, gdw_iteration, meta_gradient, trainable_parameters,
                      weighted_meta_step)
from .config import RunConfig
from .gradients import D1
from .models import WeightingNetwork
from .update import step_through_logits

DEFAULTS = RunConfig()


@dataclass(frozen=True)
class StepWeights:
    """What one step learned about its batch, detached, on the batch's device.

    ``losses``: each instance's cross-entropy at the real forward (n,). ``w``: its instance
    weight (n,): the weighting network's before its update (GDW, MW-Net) or L2RW's normalised
    weight. ``omega``, ``omega_prime``: the (n, C) class-level weights of the first stage and
    those the real update used (MW-Net: its updated network's ``w`` cloned over the classes;
    L2RW: None).
    """

    losses: Tensor
    w: Tensor
    omega: Tensor | None
    omega_prime: Tensor | None


class Reweighter:
    """The shared part: the model, the optimiser of the real update, the look-ahead step size,
    the meta-gradient method, and an optional recorder of the learned weights."""

    uses_meta = True   # needs a meta batch at every step

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, lookahead_lr: float | None = None,
                 meta_method: MetaMethod = DEFAULTS.meta_method, clamp_max: float | None = DEFAULTS.clamp_max,
                 recorder=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module classifier, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"`optimizer` must be a torch.optim.Optimizer for the model's parameters, "
                            f"got {type(optimizer).__name__}")
        if lookahead_lr is not None and not lookahead_lr > 0:
            raise ValueError(f"`lookahead_lr` must be positive (the look-ahead SGD step size), got {lookahead_lr}")
        self.model, self.optimizer, self.lookahead_lr = model, optimizer, lookahead_lr
        self.meta_method, self.clamp_max, self.recorder = meta_method, clamp_max, recorder
        self.last: StepWeights | None = None

    def current_lookahead_lr(self) -> float:
        """``lookahead_lr``, or the real optimiser's current learning rate."""
        return self.lookahead_lr if self.lookahead_lr is not None else self.optimizer.param_groups[0]["lr"]

    def step(self, x: Tensor, y: Tensor, x_meta: Tensor | None = None, y_meta: Tensor | None = None,
             index: Tensor | None = None) -> Tensor:
        """One iteration on the training batch ``(x, y)`` with the meta batch ``(x_meta, y_meta)``;
        returns the batch's mean (unweighted) cross-entropy as a 0-dim tensor on the device.
        ``index`` (the instances' positions in the training set) is needed by the recorder only."""
        if self.uses_meta and (x_meta is None or y_meta is None):
            raise ValueError(f"{type(self).__name__} needs a meta batch at every step: pass x_meta and y_meta, "
                             "a batch of the clean meta set")
        self.model.train()
        logits, G, self.last = self._step(x, y, x_meta, y_meta, self.current_lookahead_lr())
        step_through_logits(self.optimizer, logits, G)
        if self.recorder is not None:
            if index is None:
                raise ValueError("a recorder is attached: pass `index`, each instance's position in the training set")
            self.recorder.record(index, y, self.last)
        return self.last.losses.mean()

    def _step(self, x, y, x_meta, y_meta, lr) -> tuple[Tensor, Tensor, StepWeights]:
        """The real forward's logits, the matrix ``G`` Step 3 sends into them, and the weights."""
        raise NotImplementedError

    def _forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The real forward's logits and each instance's cross-entropy, checked finite."""
        logits = self.model(x)
        losses = F.cross_entropy(logits.detach(), y, reduction="none")
        check_finite(losses.mean())
        return logits, losses

    def state_dict(self) -> dict:
        """Everything a checkpoint needs besides the model and the real optimiser."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


class MWNet(Reweighter):
    """Meta-Weight-Net (Shu et al. 2019) in the public GDW code's form: a weighting network maps
    each instance's loss to a weight; the real update uses the *updated* network's weights,
    ``G = w' (p - y) / n``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, vnet: nn.Module | None = None,
                 vnet_optimizer: torch.optim.Optimizer | None = None, vnet_hidden: int = DEFAULTS.vnet_hidden,
                 vnet_lr: float = DEFAULTS.vnet_lr, vnet_weight_decay: float = DEFAULTS.vnet_weight_decay, **common):
        super().__init__(model, optimizer, **common)
        if vnet is None:
            device = next(model.parameters()).device
            vnet = WeightingNetwork(vnet_hidden).to(device)
        self.vnet = vnet
        self.vnet_optimizer = vnet_optimizer or torch.optim.Adam(vnet.parameters(), lr=vnet_lr,
                                                                 weight_decay=vnet_weight_decay)

    @staticmethod
    def _checked(step):
        """``step`` (Steps 1-2), once its losses and its meta loss are known to be finite."""
        check_finite(step.losses.mean())
        check_finite(step.meta_loss, "meta loss")
        return step

    def _step(self, x, y, x_meta, y_meta, lr):
        step = self._checked(weighted_meta_step(
            self.model, self.vnet, x, y, x_meta, y_meta, lr, vnet_optimizer=self.vnet_optimizer,
            clamp_max=self.clamp_max, constraint=False, method=self.meta_method))
        with torch.no_grad():
            w_new = self.vnet(step.losses[:, None]).reshape(-1)
        G = w_new[:, None] * step.d1 / len(x)
        return step.logits, G, StepWeights(step.losses, step.w, step.omega,
                                           first_stage_weights(w_new, step.d1.shape[1]))

    def state_dict(self) -> dict:
        return {"vnet": self.vnet.state_dict(), "vnet_optimizer": self.vnet_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.vnet.load_state_dict(state["vnet"])
        self.vnet_optimizer.load_state_dict(state["vnet_optimizer"])


class GDW(MWNet):
    """Generalized Data Weighting (Algorithm 1): MW-Net's weighting network gives first-stage
    class-level weights (Eq. 9, zero-mean constrained, Eq. 4-6); the meta gradient on them
    (Eq. 10) moves each class's weight of each instance separately (``step_rule="code"``: the
    public code's normalised, clipped step of size ``outer_lr``; ``"paper"``: Eq. 11 with
    ``omega_lr``); the constrained result ``omega'`` weights the real update (Eq. 12).
    ``constraint=False`` drops the zero-mean constraint (Section 4.1's ablation)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 step_rule: StepRule = DEFAULTS.step_rule, outer_lr: float = DEFAULTS.outer_lr,
                 omega_lr: float | None = DEFAULTS.omega_lr, clip: float = DEFAULTS.clip,
                 constraint: bool = DEFAULTS.constraint, **mwnet):
        super().__init__(model, optimizer, **mwnet)
        if step_rule == "paper" and omega_lr is None:
            raise ValueError("`omega_lr` (eta_omega of Eq. 11) is required with step_rule='paper'")
        self.step_rule, self.outer_lr, self.omega_lr = step_rule, outer_lr, omega_lr
        self.clip, self.constraint = clip, constraint

    def _step(self, x, y, x_meta, y_meta, lr):
        it = self._checked(gdw_iteration(
            self.model, self.vnet, x, y, x_meta, y_meta, lr, vnet_optimizer=self.vnet_optimizer, rule=self.step_rule,
            outer_lr=self.outer_lr, omega_lr=self.omega_lr, clip=self.clip, clamp_max=self.clamp_max,
            constraint=self.constraint, method=self.meta_method))
        return it.logits, it.G_step3, StepWeights(it.losses, it.w, it.omega, it.omega_prime.detach())


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


class L2RW(Reweighter):
    """Learning to Reweight Examples (Ren et al. 2018): each iteration weights each instance by
    how well its gradient agrees with the meta batch's (clipped at zero, normalised to sum 1);
    nothing is learned across iterations. The weights already sum to 1, so ``G = w (p - y)``."""

    def _step(self, x, y, x_meta, y_meta, lr):
        logits, losses = self._forward(x, y)
        w, meta_loss = l2rw_instance_weights(self.model, logits, x, y, x_meta, y_meta, lr, method=self.meta_method)
        check_finite(meta_loss, "meta loss")
        return logits, w[:, None] * D1(logits.detach(), y), StepWeights(losses, w, None, None)


class BaseModel(Reweighter):
    """No reweighting, the paper's BaseModel: plain cross-entropy, ``G = (p - y) / n``. Here so that
    plain training goes through the same calls (and :func:`gdwlib.fit`) as the methods it is
    compared with; the meta batch is not used. Its recorder keeps the losses (the small-loss
    criterion) and instance weights of 1."""

    uses_meta = False

    def _step(self, x, y, x_meta, y_meta, lr):
        logits, losses = self._forward(x, y)
        return logits, D1(logits.detach(), y) / len(x), StepWeights(losses, torch.ones_like(losses), None, None)
