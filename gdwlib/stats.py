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
    """Per-epoch weight statistics of one run (see the module docstring).

    Everything an iteration records stays on ``device``; :meth:`end_epoch` reads the epoch's
    counts and weights back in one go, so that recording never stalls a GPU.
    """

    def __init__(self, num_train: int, num_classes: int, tracked: np.ndarray, device: torch.device | str = "cpu"):
        self.num_train, self.num_classes = num_train, num_classes
        self.tracked = np.asarray(tracked, dtype=np.int64)
        self.device = torch.device(device)
        # slot[i]: the row of tracked instance i in the epoch's rows, len(tracked) (a spare row) for the rest
        self._slot = torch.full((num_train,), len(self.tracked), dtype=torch.long)
        self._slot[torch.from_numpy(self.tracked)] = torch.arange(len(self.tracked))
        self._slot = self._slot.to(self.device)
        self.epochs: list[dict] = []

    def start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._counts = torch.zeros(len(CATEGORIES), 2, dtype=torch.long, device=self.device)  # [increased, total]
        nan = {"fill_value": float("nan"), "dtype": torch.float32, "device": self.device}
        self._target = torch.full((self.num_train,), **nan)
        self._instance = torch.full((self.num_train,), **nan)
        self._rows = torch.full((len(self.tracked) + 1, 2, self.num_classes), **nan)

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
        masks = torch.stack([
            clean[:, None] & ~is_label,                                    # nontarget_clean
            noisy[:, None] & is_true,                                      # truetarget_noisy
            noisy[:, None] & ~is_label & ~is_true,                         # nontarget_noisy
            (labels == C - 1)[:, None] & F.one_hot(torch.full_like(labels, C - 2), C).bool(),  # penultimate_on_last
        ])
        self._counts += torch.stack([(increased & masks).sum((1, 2)), masks.sum((1, 2))], dim=1)
        self._target[index] = omega_prime.gather(1, labels[:, None]).squeeze(1).float()
        self._instance[index] = w.float()
        # each instance appears once in a batch, so only the spare row is written twice
        self._rows[self._slot[index]] = torch.stack([omega, omega_prime], dim=1).float()

    def end_epoch(self) -> dict:
        """The epoch's ratios of increased weights (NaN where a category was empty)."""
        counts = dict(zip(CATEGORIES, self._counts.tolist()))
        ratios = {k: (inc / tot if tot else float("nan")) for k, (inc, tot) in counts.items()}
        self.epochs.append({"epoch": self._epoch, "ratios": ratios, "counts": counts,
                            "target": self._target.cpu().numpy(), "instance": self._instance.cpu().numpy(),
                            "rows": self._rows[:-1].cpu().numpy()})
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
