"""Statistics of learned weights, recorded during training for the paper's Figures 3-6.

Every iteration of a weight-learning method (GDW, MW-Net) reports the first-stage weights
``omega`` and the weights ``omega'`` actually used in Step 3 (for MW-Net both are the instance
weight cloned over the C classes). Per epoch this keeps:

- Figure 3: each training instance's target weight ``omega'_t`` (and its instance weight ``w``);
- Figure 4: both rows, for a few tracked instances (the first noisy and clean ones);
- Figure 5: the fraction of weights that increased (``omega'_j > omega_j``) among non-target
  weights of clean instances, true-target weights of noisy instances, and non-target weights of
  noisy instances other than the true target;
- Figure 6: the fraction of increased ``omega_{C-2}`` on instances labelled ``C-1`` (in the
  long-tailed setting the two smallest classes).

Counting is a handful of tensor reductions per batch; nothing is stored per iteration.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

CATEGORIES = ("nontarget_clean", "truetarget_noisy", "nontarget_noisy", "penultimate_on_last")


class WeightStats:
    """Per-epoch weight statistics of one run (see the module docstring)."""

    def __init__(self, num_train: int, num_classes: int, tracked: np.ndarray):
        self.num_train, self.num_classes = num_train, num_classes
        self.tracked = np.asarray(tracked, dtype=np.int64)
        self.epochs: list[dict] = []

    def start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._counts = {k: [0, 0] for k in CATEGORIES}  # [increased, total]
        self._target = np.full(self.num_train, np.nan, dtype=np.float32)
        self._instance = np.full(self.num_train, np.nan, dtype=np.float32)
        self._rows = np.full((len(self.tracked), 2, self.num_classes), np.nan, dtype=np.float32)

    @torch.no_grad()
    def record(self, labels: Tensor, true_labels: Tensor, index: Tensor, w: Tensor, omega: Tensor,
               omega_prime: Tensor) -> None:
        """One iteration: labels, true labels (-1 where unknown), instance indices, the weighting
        network's ``w`` (n,), and the (n, C) weights before and after the iteration."""
        C = self.num_classes
        known = true_labels >= 0
        noisy = known & (labels != true_labels)
        clean = known & ~noisy
        is_label = F.one_hot(labels, C).bool()
        is_true = F.one_hot(true_labels.clamp(min=0), C).bool() & known[:, None]
        increased = omega_prime > omega
        masks = {
            "nontarget_clean": clean[:, None] & ~is_label,
            "truetarget_noisy": noisy[:, None] & is_true,
            "nontarget_noisy": noisy[:, None] & ~is_label & ~is_true,
            "penultimate_on_last": (labels == C - 1)[:, None] & F.one_hot(torch.full_like(labels, C - 2), C).bool(),
        }
        for key, mask in masks.items():
            self._counts[key][0] += int((increased & mask).sum())
            self._counts[key][1] += int(mask.sum())
        idx = index.cpu().numpy()
        self._target[idx] = omega_prime.gather(1, labels[:, None]).squeeze(1).float().cpu().numpy()
        self._instance[idx] = w.float().cpu().numpy()
        hit = np.isin(idx, self.tracked)
        if hit.any():
            where = {int(t): k for k, t in enumerate(self.tracked)}
            for pos in np.flatnonzero(hit):
                k = where[int(idx[pos])]
                self._rows[k, 0] = omega[pos].float().cpu().numpy()
                self._rows[k, 1] = omega_prime[pos].float().cpu().numpy()

    def end_epoch(self) -> dict:
        """The epoch's ratios of increased weights (NaN where a category was empty)."""
        ratios = {k: (inc / tot if tot else float("nan")) for k, (inc, tot) in self._counts.items()}
        self.epochs.append({"epoch": self._epoch, "ratios": ratios, "counts": {k: list(v) for k, v in self._counts.items()},
                            "target": self._target, "instance": self._instance, "rows": self._rows})
        return ratios

    def summary(self) -> list[dict]:
        """Per-epoch ratios (JSON-ready)."""
        return [{"epoch": e["epoch"], **{f"increased_{k}": e["ratios"][k] for k in CATEGORIES}} for e in self.epochs]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything per epoch and per instance, for the ``.npz`` beside a result."""
        if not self.epochs:
            return {}
        return {
            "epochs": np.array([e["epoch"] for e in self.epochs]),
            "target_weight": np.stack([e["target"] for e in self.epochs]),      # (E, N) omega'_t
            "instance_weight": np.stack([e["instance"] for e in self.epochs]),  # (E, N) w
            "tracked": self.tracked,
            "tracked_rows": np.stack([e["rows"] for e in self.epochs]),         # (E, K, 2, C)
            "increased": np.array([[e["counts"][k] for k in CATEGORIES] for e in self.epochs]),  # (E, 4, 2)
        }

    def state_dict(self) -> dict:
        """Tensors instead of arrays, so that checkpoints load with ``weights_only=True``."""
        as_tensor = lambda e: {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in e.items()}  # noqa: E731
        return {"epochs": [as_tensor(e) for e in self.epochs], "tracked": torch.from_numpy(self.tracked)}

    def load_state_dict(self, state: dict) -> None:
        as_array = lambda e: {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in e.items()}  # noqa: E731
        self.epochs, self.tracked = [as_array(e) for e in state["epochs"]], state["tracked"].numpy()
