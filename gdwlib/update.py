"""The real update every method ends with: one backward pass from the logits, one optimiser step."""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite


def step_through_logits(optimizer: torch.optim.Optimizer, logits: Tensor, G: Tensor) -> None:
    """Send ``G = dLoss/dlogits`` into the logits of the real forward (Eq. 3: the parameters get
    ``D2^T G``) and take ``optimizer``'s step, whatever optimiser it is."""
    check_finite(G, "gradient sent into the logits")
    optimizer.zero_grad(set_to_none=True)
    logits.backward(G)
    optimizer.step()
