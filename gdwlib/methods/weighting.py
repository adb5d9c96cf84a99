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
    r"""Meta-Weight-Net (Shu et al. 2019) in the public GDW code's form.

    A weighting network $V(\ell; \phi)$, an MLP $1 \to$ ``vnet_hidden`` $\to 1$ with ReLU and a
    sigmoid output, maps each instance's (detached) cross-entropy $\ell_i$ to a weight
    $w_i \in (0, 1)$. Each iteration is the three-step loop of Algorithm 1 with one weight per
    instance:

    1. a virtual SGD step $\hat\theta(\phi) = \theta - \eta_\theta \frac1n \sum_i w_i \nabla_\theta \ell_i$
       at the current learning rate $\eta_\theta$;
    2. the mean cross-entropy of a clean meta batch at $\hat\theta$ is back-propagated to
       $\phi$, and Adam takes one step on it (learning rate ``vnet_lr``, weight decay
       ``vnet_weight_decay``);
    3. the real step weights each instance with the *updated* network's $w'_i$: the matrix sent
       into the logits is $G_i = w'_i (\mathbf p_i - \mathbf y_i) / n$, without normalising the
       weights over the batch.

    Set-up for the GDW setting:

    - The tables' MW-Net is the public GDW code's own MW-Net mode, not the original MW-Net
      code: the same network, SGD, cosine schedule and epochs as every method (the original
      used a step schedule over 120 epochs), the same weighting network, optimiser and meta
      batch as GDW, so that the two differ only in the weights of Step 3.
    - ``vnet_hidden`` = 100, ``vnet_lr`` = 1e-3 and ``vnet_weight_decay`` = 1e-4 are the
      public code's values (the original MW-Net code's noisy-label script also uses Adam at
      1e-3).
    - $\mathbf p$ is clamped at ``clamp_max`` = 0.999 before forming $\mathbf p - \mathbf y$, as
      the public code does in both modes.
    - The meta-gradient of Step 2 is computed by ``meta_method`` = ``"jvp"`` (one
      Jacobian-vector product on the real forward's graph); ``"reference"`` differentiates
      through the look-ahead parameters as the original code does; the two agree to round-off.
    - Every run records statistics of the learned weights during training, which the book's
      figures and its label-error chapter read.
    """

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
    r"""Generalized Data Weighting (Chen et al. 2021, Algorithm 1), the public code's variant by
    default.

    MW-Net's loop with class-level weights. Step 1 clones each instance's weight $w_i$ over the
    $C$ classes, $\boldsymbol\omega_i = w_i \mathbf 1$, and takes the virtual step with the
    manipulated gradient $\boldsymbol\omega_i \otimes (\mathbf p_i - \mathbf y_i) / n$ (Eq. 9).
    Step 2's back-propagation of the meta loss updates the weighting network (Eq. 10) and
    yields the intermediate gradient $\mathbf g_i = \partial L_{meta} / \partial \boldsymbol\omega_i$;
    one descent step on it gives the second-stage weights $\boldsymbol\omega'_i$ (Eq. 11),
    whose label entry the zero-mean constraint sets to
    $\omega'_{it} = \sum_{j \ne t} \omega'_{ij} p_{ij} / (1 - p_{it})$ (Eq. 4). Step 3 sends
    $G_i = \boldsymbol\omega'_i \otimes (\mathbf p_i - \mathbf y_i) / n$ into the logits (Eq. 12).

    Set-up for the GDW setting:

    - Everything MW-Net uses (network, schedule, weighting network, its Adam optimiser, meta
      batch, ``clamp_max``, ``meta_method``) is shared with the MW-Net runs above, so the two
      differ only in Step 3's weights.
    - ``step_rule`` = ``"code"``: the public code's Step-2 rule,
      $\boldsymbol\omega' = \boldsymbol\omega - \mathrm{clip}(\eta\, \mathbf g / \sum |\mathbf g|, \pm c)$,
      then clamped to $[10^{-6}, 10^{6}]$, with the sum over the batch's $n \times C$ entries, $\eta$ = ``outer_lr`` and
      $c$ = ``clip`` = 0.2. The code's $\eta$ is 100 on CIFAR-10 and 1000 on CIFAR-100, a mean
      step $\eta / (nC) = 0.1$ per weight; each profile sets ``outer_lr`` to keep that mean step
      for its batch size and number of classes. ``"paper"`` is Eq. 11 as printed,
      $\boldsymbol\omega' = \boldsymbol\omega - \eta_\omega \mathbf g$, with
      $\eta_\omega$ = ``omega_lr``, whose value the available text of the paper does not give.
    - The zero-mean constraint is applied to the first-stage weights of Step 1 too, as in the
      public code; equal weights stay equal unless $p_t > 0.999$, where the clamp of
      $\mathbf p$ shrinks $\omega_t$.
    - The second-stage weights are built from the weighting network's output *before* its
      Step-2 update (MW-Net's Step 3 uses the updated network), as in the public code.
    - ``constraint`` = False drops the zero-mean constraint in both stages: the paper's
      Section 4.1 ablation, run by the book's figures chapter.
    """

    name = "GDW"
    reweighter_class = reweighting.GDW
    reweighter_fields = MWNet.reweighter_fields + ("step_rule", "outer_lr", "omega_lr", "clip", "constraint")
