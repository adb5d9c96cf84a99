"""Co-teaching (Han et al. 2018): two networks, each trained on the instances its partner finds easy."""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.batches import Batch, stream_seed
from ..gradients import D1
from .base import Method, check_finite, make_model, sgd, step_through_logits


def forget_rate(epoch: int, tau: float, num_gradual: int) -> float:
    """The fraction of each batch dropped in (0-based) ``epoch``: ``R(e) = min(e / T_k * tau, tau)``."""
    return min(epoch / num_gradual * tau, tau)


# Label-noise rates published for data sets whose labels are noisy by nature.
ESTIMATED_NOISE_RATE = {"clothing1m": 0.3846}   # Xiao et al. 2015: 61.54% of the labels are correct


def setting_forget_rate(config, clean_forget_rate: float) -> float:
    """Co-teaching's default tau for ``config``: the noise ratio this project applied, else the
    data set's published noise estimate, else ``clean_forget_rate`` (no noise known)."""
    if config.noise != "none":
        return float(config.ratio)
    return float(ESTIMATED_NOISE_RATE.get(config.dataset, clean_forget_rate))


def num_remember(n: int, rate: float) -> int:
    """How many of ``n`` instances are kept: ``int((1 - R) n)``, rounded down as in the authors' code."""
    return int((1 - rate) * n)


def small_loss_mask(losses: Tensor, k: int) -> Tensor:
    """True on the ``k`` instances of smallest loss (ties broken by position)."""
    mask = torch.zeros_like(losses, dtype=torch.bool)
    mask[torch.argsort(losses, stable=True)[:k]] = True
    return mask


def selected_logit_gradient(logits: Tensor, targets: Tensor, selected: Tensor) -> Tensor:
    """``G_i = (p_i - y_i) / k`` on the ``k`` selected instances, 0 on the others: the gradient of
    the mean cross-entropy over the selected set (no instance selected: no gradient)."""
    k = selected.sum().clamp(min=1)   # kept on the device
    return selected[:, None] * D1(logits, targets) / k


class CoTeaching(Method):
    r"""Co-teaching: two networks of the same architecture, initialised independently. In every batch
    each network ranks the instances by its own cross-entropy and keeps the ``k`` smallest; each
    network is then updated on the set its *partner* kept, with $G_i = (\mathbf p_i - \mathbf y_i) / k$ there and 0
    elsewhere. $k = \lfloor (1 - R(e))\, n \rfloor$, and the forget rate $R(e) = \min(e \tau / T_k, \tau)$
    grows linearly from 0 to $\tau$ over the first $T_k$ epochs (exponent 1). Network 1 is
    evaluated and saved.

    Set-up for the GDW setting:

    - Both networks use the GDW setting's network, SGD and cosine schedule over the setting's epochs, not the
      authors' 9-layer CNN and Adam schedule (200 epochs, linear decay from epoch 80 with beta1
      switching to 0.1): all methods share one schedule. GDW does not say which optimiser it
      used for Co-teaching.
    - ``forget_rate`` $\tau$ (option) is the setting's noise rate by default (:func:`setting_forget_rate`),
      as the authors' code sets it to the known noise rate:

      - where this project corrupted the labels, the configured ratio. Under the public code's
        uniform noise, which redraws the label from all C classes, the true flip rate is
        $r (C-1) / C$ for a noise ratio $r$, so this drops a little more than the noisy fraction;
      - on Clothing1M, whose labels are noisy by nature, the data set's own estimate: Xiao et
        al. (2015) found 61.54% of its labels correct, so $\tau = 0.3846$;
      - where no noise was added (the clean columns of Tables 2 and 3), ``clean_forget_rate``
        (option) = 0.2. A rate of 0 would make Co-teaching two independent BaseModels, yet the
        paper's clean-column Co-teach numbers sit 1.2 (CIFAR-10) and 2.1 (CIFAR-100) points below
        BaseModel's, which is what dropping a sizeable share of hard, correctly labelled images
        does. 0.2 is the mildest noise rate of the paper's tables (Table 3's 20% flip) and of
        Co-teaching's own experiments (symmetric 20%): the rate a user who does not know that
        the labels are clean would guess. It is an estimate, not a measurement.
    - ``num_gradual`` $T_k$ (option) defaults to one eighth of the epochs: the authors' default of
      10 epochs in GDW's 80-epoch setting, and the same share of a shorter run (2 of the ``cpu``
      profile's 12), so that the drop rate reaches $\tau$ equally early in both.
    - Epochs count from 0: the first epoch drops nothing and $\tau$ is reached in epoch $T_k + 1$.
      The authors' code indexes ``linspace(0, tau, T_k)`` from its 1-based epoch loop, so it
      drops $\tau / (T_k - 1)$ already in the first epoch and reaches $\tau$ at epoch $T_k - 1$;
      the form here is the paper's $\min(T \tau / T_k, \tau)$ with $T$ the epochs completed.
    - The loss on the selected set is its mean, as in the paper. The authors' code divides
      that mean by $k$ once more, a scale that Adam nearly ignores but SGD would not.
    - The second network's initialisation is drawn from its own seed, derived from the run's.
    """

    name = "Co-teach"
    options = {"forget_rate": None, "clean_forget_rate": 0.2, "num_gradual": None}
    state_objects = ("model", "optimizer", "model2", "optimizer2")

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        self.tau = self.tau_for(config)
        self.num_gradual = self.option("num_gradual") or max(1, round(config.epochs / 8))
        if not 0 <= self.tau < 1:
            raise ValueError(f"Co-teach's forget_rate must lie in [0, 1), got {self.tau}")
        if not self.num_gradual >= 1:
            raise ValueError(f"Co-teach's num_gradual must be at least 1, got {self.num_gradual}")
        with torch.random.fork_rng():
            torch.manual_seed(stream_seed(config.seed, 0, "init/second network") % 2**63)
            self.model2 = make_model(config, data).to(device)
        self.optimizer2 = sgd(self.model2, config)
        self.rate = 0.0

    @classmethod
    def tau_for(cls, config) -> float:
        """The forget rate tau that ``config`` trains with: the ``forget_rate`` option where given,
        else :func:`setting_forget_rate` with the ``clean_forget_rate`` option."""
        option = lambda name: config.option(name, cls.options[name])  # noqa: E731
        tau = option("forget_rate")
        return float(setting_forget_rate(config, option("clean_forget_rate")) if tau is None else tau)

    def start_epoch(self, epoch: int, lr: float) -> None:
        super().start_epoch(epoch, lr)
        for group in self.optimizer2.param_groups:
            group["lr"] = lr
        self.rate = forget_rate(epoch, self.tau, self.num_gradual)

    def train_step(self, batch: Batch, meta: Iterator[Batch] | None) -> Tensor:
        self.model.train()
        self.model2.train()
        logits1, logits2 = self.model(batch.x), self.model2(batch.x)
        losses1 = F.cross_entropy(logits1.detach(), batch.y, reduction="none")
        losses2 = F.cross_entropy(logits2.detach(), batch.y, reduction="none")
        check_finite(losses1.mean())
        check_finite(losses2.mean(), "second network's loss")
        k = num_remember(len(batch), self.rate)
        kept1, kept2 = small_loss_mask(losses1, k), small_loss_mask(losses2, k)
        step_through_logits(self.optimizer, logits1, selected_logit_gradient(logits1.detach(), batch.y, kept2))
        step_through_logits(self.optimizer2, logits2, selected_logit_gradient(logits2.detach(), batch.y, kept1))
        return losses1.mean()
