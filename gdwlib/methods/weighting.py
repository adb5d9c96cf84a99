"""MW-Net and GDW: the three-step bi-level loop with MW-Net's weighting network, as in the
public GDW code (both modes go through the logits, 80-epoch cosine schedule).

- MW-Net: Step 3 uses the *updated* weighting network's instance weights, ``G = w' (p - y) / n``.
- GDW: Step 3 uses the second-stage class-level weights ``omega'`` built from the intermediate
  gradient (Eq. 9-12); the weighting network is trained in the same way.
"""
from __future__ import annotations

from typing import Iterator

from torch import Tensor

from .. import reweighting
from ..data.batches import Batch
from .base import Method


class MWNet(Method):
    """Meta-Weight-Net in the public GDW code's form."""

    name = "MWNet"
    revision = 2  # 2: J v read off the real forward's graph (gdwlib.tangents); equal up to rounding
    uses_meta = True
    records_weights = True
    state_objects = ("model", "optimizer", "vnet", "vnet_optimizer")

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        self.reweighter = self.make_reweighter(config)
        self.vnet, self.vnet_optimizer = self.reweighter.vnet, self.reweighter.vnet_optimizer

    reweighter_class = reweighting.MWNet
    # the config fields the reweighter takes, by the same names
    reweighter_fields = ("vnet_hidden", "vnet_lr", "vnet_weight_decay", "meta_method", "clamp_max")

    def make_reweighter(self, config) -> reweighting.MWNet:
        """The public API's object on this run's model and optimiser: the same code path."""
        return self.reweighter_class(self.model, self.optimizer,
                                     **{name: getattr(config, name) for name in self.reweighter_fields})

    def train_step(self, batch: Batch, meta: Iterator[Batch]) -> Tensor:
        m = next(meta)
        loss = self.reweighter.step(batch.x, batch.y, m.x, m.y)
        if self.stats is not None:
            last = self.reweighter.last
            self.stats.record(batch.y, batch.y_true, batch.index, last.w, last.omega, last.omega_prime)
        return loss


class GDW(MWNet):
    """Generalized Data Weighting (Algorithm 1), the public code's variant by default.

    Config: ``step_rule`` ('code' | 'paper' with ``omega_lr``), ``outer_lr``, ``clip``,
    ``clamp_max``, ``constraint`` (False: the Section 4.1 ablation), ``meta_method``.
    """

    name = "GDW"
    reweighter_class = reweighting.GDW
    reweighter_fields = MWNet.reweighter_fields + ("step_rule", "outer_lr", "omega_lr", "clip", "constraint")
