"""GLC, Gold Loss Correction (Hendrycks et al. 2018): estimate the label-corruption matrix with
a network trained on the noisy labels and the trusted (gold) meta set, then train a fresh
network on gold and noisy examples together, correcting the noisy examples' loss with it."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.batches import Batch
from ..gradients import D1
from .base import Method, check_finite, cosine_lr, sgd, step_through_logits


def estimate_corruption(probs: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``C[i, :] = mean of p(x)`` over the gold examples ``x`` whose true label is ``i``.

    ``probs`` are the noisy-label model's softmax outputs on the gold set, so ``C[i, j]``
    estimates ``p(noisy label j | true label i)``. A class with no gold example gets the
    identity row (no corruption assumed for it).
    """
    counts = torch.bincount(labels, minlength=num_classes).to(probs.dtype)
    sums = torch.zeros(num_classes, probs.shape[1], dtype=probs.dtype, device=probs.device)
    sums.index_add_(0, labels, probs)
    identity = torch.eye(num_classes, probs.shape[1], dtype=probs.dtype, device=probs.device)
    return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], identity)


def corrected_logit_gradient(logits: Tensor, labels: Tensor, corruption: Tensor) -> Tensor:
    """``d/dz_k [-log (C^T p)_s] = p_k (1 - C[k, s] / q_s)`` with ``q_s = sum_i p_i C[i, s]``.

    Computed as ``softmax(z) - softmax(z + log C[:, s])``: the second term is
    ``p_k C[k, s] / q_s``, evaluated without dividing by a ``q_s`` that may underflow.
    """
    log_c = corruption.log()[:, labels].T          # (n, C): log C[k, s_n]
    return torch.softmax(logits, dim=1) - torch.softmax(logits + log_c, dim=1)


def phase_lengths(epochs: int, phase1_fraction: float) -> tuple[int, int]:
    """Epochs of phase 1 (``floor(fraction * epochs)``, at least 1) and of phase 2 (the rest, at least 1)."""
    if epochs < 2:
        raise ValueError(f"GLC trains in two phases and needs epochs >= 2, got {epochs}")
    if not 0.0 < phase1_fraction < 1.0:
        raise ValueError(f"GLC's phase1_fraction must lie in (0, 1), got {phase1_fraction}")
    first = min(max(math.floor(phase1_fraction * epochs), 1), epochs - 1)
    return first, epochs - first


def gold_due(silver_seen: int, gold: int, silver: int) -> int:
    """Gold examples owed after ``silver_seen`` silver ones: ``floor(silver_seen * M / N)``.

    Each silver batch is joined by the difference of this count before and after it, so the
    remainder is carried from batch to batch: a batch of ``b`` gets ``floor(b M / N)`` or one
    more, and a pass over the ``N`` silver examples brings exactly ``M`` gold ones, the share of
    the shuffled union of both sets (``M / (M + N)`` of all examples)."""
    return silver_seen * gold // silver


def _cat(batches: list[Batch]) -> Batch:
    return Batch(*(torch.cat([getattr(b, f) for b in batches]) for f in ("x", "y", "y_true", "index")))


def _take(batch: Batch, part: slice) -> Batch:
    return Batch(batch.x[part], batch.y[part], batch.y_true[part], batch.index[part])


class ExampleStream:
    """An endless stream of batches, read out ``k`` examples at a time, in order."""

    def __init__(self, batches: Iterator[Batch]):
        self._batches = batches
        self._pending: Batch | None = None

    def take(self, k: int) -> Batch:
        if k < 1:
            raise ValueError(f"take at least one example, got {k}")
        parts, have = [], 0
        while have < k:
            if self._pending is None or len(self._pending) == 0:
                self._pending = next(self._batches)
            need = k - have
            parts.append(_take(self._pending, slice(0, need)))
            self._pending = _take(self._pending, slice(need, None))
            have += len(parts[-1])
        return _cat(parts)


@dataclass
class GoldSilverBatch(Batch):
    r"""A silver (noisy) training batch followed by ``num_gold`` gold (meta-set) examples; the gold
    examples' ``index`` refers to the meta set."""

    num_gold: int = 0


class GLC(Method):
    r"""Gold Loss Correction (Hendrycks et al. 2018; the authors' code is github.com/mmazeika/glc).

    Phase 1 trains the network on the noisy (silver) training set with cross-entropy. Its
    softmax outputs on the clean (gold) meta set, averaged per true class, give the corruption
    matrix $\hat C_{ij} \approx p(\text{noisy } j \mid \text{true } i)$. Phase 2 restarts from the network's
    initial weights
    and trains on gold and silver examples together: a silver example with label $s$ has
    loss $-\log \sum_i p_i \hat C_{is}$, a gold example plain cross-entropy; the batch's losses are
    summed and divided by its number of examples.

    Set-up for the GDW setting:
    GLC's own protocol trains each phase for the full schedule (75 + 75 epochs), twice the
    compute of every other method; here the two phases share GDW's epoch budget,
    ``phase1_fraction`` = 0.5 of the epochs for phase 1 and the rest for phase 2, each phase
    with its own cosine schedule over its own length (the authors' code also restarts the
    schedule). The estimate uses the phase-1 network in eval mode, without augmentation, as
    the authors do; a class with no meta example would get an identity row (the authors' code
    would divide by zero; GDW's meta sets hold every class). Phase 2 starts a fresh SGD
    optimiser (``fresh_optimizer`` = True): the authors' code keeps the momentum buffer of
    phase 1's last step, a gradient of a different network, which would push the re-initialised
    network along it for its first few dozen steps.

    Gold and silver together: the authors shuffle both sets into one loader. Here every silver
    batch is joined by gold examples drawn in order from the meta set's own stream, as many as
    keep the gold share at that of the union (:func:`gold_due`: the remainder carries over, so
    for 1000 meta among 49,000 training images a batch of 100 gets 2 or 3, 2.04 on average, and
    each epoch holds every gold image once); an epoch is still one pass over the training set,
    for every data source. Silver and gold are forwarded as one batch, so BatchNorm normalises
    with the statistics of their union, as it would for any batch of the shuffled union. The
    authors' code splits each batch and forwards the two parts separately; with GDW's 2% gold
    share (the authors used 10%) that would normalise about two gold images by their own
    statistics (none in some batches) and update the running statistics twice per step, mostly
    from those tiny batches, a side effect of their code's structure rather than part of GLC.
    """

    name = "GLC"
    options = {"phase1_fraction": 0.5, "fresh_optimizer": True}
    revision = 2  # 2: the gold share of the union (it was ceil(b M / N) per batch, 3% on CIFAR)

    def __init__(self, config, data, device):
        super().__init__(config, data, device)
        self.phase1_epochs, self.phase2_epochs = phase_lengths(config.epochs, self.option("phase1_fraction"))
        self.initial = copy.deepcopy(self.model.state_dict())
        self.corruption: Tensor | None = None

    def learning_rate(self, epoch: int) -> float:
        """Cosine decay within each phase, restarting at ``lr`` when phase 2 begins."""
        c = self.config
        if c.schedule == "constant":
            return c.lr
        e, length = (epoch, self.phase1_epochs) if epoch < self.phase1_epochs \
            else (epoch - self.phase1_epochs, self.phase2_epochs)
        return cosine_lr(c.lr, e, length)

    def start_epoch(self, epoch: int, lr: float) -> None:
        if epoch >= self.phase1_epochs and self.corruption is None:
            self._switch_phase(epoch)
        super().start_epoch(epoch, lr)

    def _switch_phase(self, epoch: int) -> None:
        """Estimate the corruption matrix with the phase-1 network, then restart from the initial weights."""
        self.corruption = self._estimate(epoch)
        self.model.load_state_dict(self.initial)
        if self.option("fresh_optimizer"):
            self.optimizer = sgd(self.model, self.config)

    @torch.no_grad()
    def _estimate(self, epoch: int) -> Tensor:
        self.model.eval()
        probs, labels = [], []
        for b in self.data.meta_epoch(epoch, augment=False):
            probs.append(torch.softmax(self.model(b.x), dim=1))
            labels.append(b.y)
        return estimate_corruption(torch.cat(probs), torch.cat(labels), self.num_classes)

    def batches(self, epoch: int) -> Iterator[Batch]:
        silver = self.data.train_batches(epoch)
        if epoch < self.phase1_epochs:
            yield from silver
            return
        gold, M, N = ExampleStream(self.data.meta_batches(epoch)), len(self.data.meta), len(self.data.train)
        seen = 0
        for s in silver:
            k = gold_due(seen + len(s), M, N) - gold_due(seen, M, N)
            seen += len(s)
            joined = _cat([s, gold.take(k)]) if k else s
            yield GoldSilverBatch(joined.x, joined.y, joined.y_true, joined.index, num_gold=k)

    def train_step(self, batch: Batch, meta: Iterator[Batch] | None) -> Tensor:
        """One step; returns the silver examples' cross-entropy with their noisy labels (as every method)."""
        self.model.train()  # the loss reported is the silver part's, so no self.forward here
        logits = self.model(batch.x)
        n = len(batch)
        silver = n - getattr(batch, "num_gold", 0)
        loss = F.cross_entropy(logits[:silver].detach(), batch.y[:silver])
        check_finite(loss)
        z = logits.detach()
        if self.corruption is None:
            G = D1(z, batch.y) / n
        else:
            G = torch.cat([corrected_logit_gradient(z[:silver], batch.y[:silver], self.corruption),
                           D1(z[silver:], batch.y[silver:])]) / n
        step_through_logits(self.optimizer, logits, G)
        return loss

    def state_dict(self) -> dict:
        return {**super().state_dict(), "initial_model": self.initial, "corruption": self.corruption}

    def load_state_dict(self, state: dict) -> None:
        self.initial = state["initial_model"]
        self.corruption = state["corruption"]
        super().load_state_dict(state)

    def exports(self) -> dict[str, np.ndarray]:
        return {} if self.corruption is None else {"corruption_matrix": self.corruption.cpu().numpy()}
