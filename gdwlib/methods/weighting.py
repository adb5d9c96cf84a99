"""MW-Net and GDW: the three-step bi-level loop with MW-Net's weighting network, as in the
public GDW code (both modes go through the logits, 80-epoch cosine schedule).

- MW-Net: Step 3 uses the *updated* weighting network's instance weights, ``G = w' (p - y) / n``.
- GDW: Step 3 uses the second-stage class-level weights ``omega'`` built from the intermediate
  gradient (Eq. 9-12); the weighting network is trained in the same way.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from ..bilevel import first_stage_weights, gdw_iteration, weighted_meta_step
from ..data.batches import Batch
from ..models import WeightingNetwork
from .base import Method, check_finite, step_through_logits


class MWNet(Method):
    """Meta-Weight-Net in the public GDW code's form."""

    name = "MWNet"
    revision = 2  # 2: J v read off the real forward's graph (gdwlib.tangents); equal up to rounding
    uses_meta = True
    records_weights = True
    state_objects = ("model", "optimizer", "vnet", "vnet_optimizer")

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        self.vnet = WeightingNetwork(config.vnet_hidden).to(device)
        self.vnet_optimizer = torch.optim.Adam(self.vnet.parameters(), lr=config.vnet_lr,
                                               weight_decay=config.vnet_weight_decay)

    @staticmethod
    def _check(step) -> None:
        check_finite(step.losses.mean())
        check_finite(step.meta_loss, "meta loss")

    def train_step(self, batch: Batch, meta: Iterator[Batch]) -> Tensor:
        c, m = self.config, next(meta)
        self.model.train()
        step = weighted_meta_step(self.model, self.vnet, batch.x, batch.y, m.x, m.y, self.lr,
                                  vnet_optimizer=self.vnet_optimizer, clamp_max=c.clamp_max, constraint=False,
                                  method=c.meta_method)
        self._check(step)
        with torch.no_grad():
            w_new = self.vnet(step.losses[:, None]).reshape(-1)
        G = w_new[:, None] * step.d1 / len(batch)
        step_through_logits(self.optimizer, step.logits, G)
        if self.stats is not None:
            self.stats.record(batch.y, batch.y_true, batch.index, step.w, step.omega,
                              first_stage_weights(w_new, self.num_classes))
        return step.losses.mean()


class GDW(MWNet):
    """Generalized Data Weighting (Algorithm 1), the public code's variant by default.

    Config: ``step_rule`` ('code' | 'paper' with ``omega_lr``), ``outer_lr``, ``clip``,
    ``clamp_max``, ``constraint`` (False: the Section 4.1 ablation), ``meta_method``.
    """

    name = "GDW"

    def train_step(self, batch: Batch, meta: Iterator[Batch]) -> Tensor:
        c, m = self.config, next(meta)
        self.model.train()
        it = gdw_iteration(self.model, self.vnet, batch.x, batch.y, m.x, m.y, self.lr,
                           vnet_optimizer=self.vnet_optimizer, rule=c.step_rule, outer_lr=c.outer_lr,
                           omega_lr=c.omega_lr, clip=c.clip, clamp_max=c.clamp_max, constraint=c.constraint,
                           method=c.meta_method)
        self._check(it)
        step_through_logits(self.optimizer, it.logits, it.G_step3)
        if self.stats is not None:
            self.stats.record(batch.y, batch.y_true, batch.index, it.w, it.omega, it.omega_prime)
        return it.losses.mean()
