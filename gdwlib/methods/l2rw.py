"""L2RW, Learning to Reweight Examples (Ren et al. 2018): instance weights recomputed from
scratch in every iteration from the agreement between each training example's gradient and the
clean meta batch's gradient."""
from __future__ import annotations

from typing import Iterator

from torch import Tensor

from .. import reweighting
from ..data.batches import Batch

from .base import Method


class L2RW(Method):
    r"""Learning to Reweight Examples (Ren et al. 2018, Algorithm 1).

    Each iteration puts a weight $\epsilon_i = 0$ on every training example, differentiates the
    clean meta batch's loss after the look-ahead step with respect to $\epsilon$ (at $\epsilon = 0$
    the look-ahead is $\theta$ itself, so this is the inner product of each example's gradient
    with the meta gradient), clips at zero and normalises to sum 1. The real step sends
    $w_i (\mathbf p_i - \mathbf y_i)$ into the logits: the weights already sum to 1, so there is no $1/n$.
    Nothing is learned across iterations.

    Set-up for the GDW setting:
    the network, epochs, cosine schedule, SGD and meta batch (100 clean images) are GDW's. The
    clean-side gradient is that of the meta loss alone, as in the paper's Algorithm 1; the
    authors' TensorFlow code adds the weight-decay term to the clean cost before taking its
    gradient (github.com/uber-research/learning-to-reweight-examples). When every inner product is negative the
    weights are all zero, as in the code, and that step changes the network only through
    weight decay (and momentum). The look-ahead's step size is the current learning rate; it
    cancels in the normalisation.
    """

    name = "L2RW"
    revision = 2  # 2: J v read off the real forward's graph (gdwlib.tangents); equal up to rounding
    uses_meta = True

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        self.reweighter = reweighting.L2RW(self.model, self.optimizer, meta_method=config.meta_method)

    def train_step(self, batch: Batch, meta: Iterator[Batch]) -> Tensor:
        m = next(meta)
        return self.reweighter.step(batch.x, batch.y, m.x, m.y)
