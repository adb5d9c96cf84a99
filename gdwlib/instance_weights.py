"""The weights a reweighting method learned for each training instance, for export.

Attached to a :class:`gdwlib.reweighting.Reweighter` (``recorder=``), an :class:`InstanceWeights`
keeps, for every instance, what the latest epoch gave it (the target entry ``omega'_t`` of its
class-level weights, the whole row ``omega'``, its instance weight ``w`` and its loss) and the
running sums of those over the epochs from ``average_from_epoch`` on. Memory does not grow with
iterations or epochs: about ``8 N (C + 5)`` bytes for ``N`` instances and ``C`` classes (a
million instances of ten classes: 120 MB), plus ``4 N`` bytes per epoch only where
``keep_epochs`` asks for the target weight of every epoch. Everything stays on the device of the
records until :meth:`arrays` reads it back.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FIELDS = ("target_weight", "instance_weight", "loss")   # one number per instance; "rows" has C


class InstanceWeights:
    """Per-instance learned weights: the latest epoch's, and their mean over the epochs from
    ``average_from_epoch`` on (see the module docstring)."""

    def __init__(self, num_instances: int, num_classes: int, *, average_from_epoch: int = 0,
                 keep_epochs: bool = False, device: torch.device | str = "cpu"):
        if num_instances < 1 or num_classes < 2:
            raise ValueError(f"need at least one instance and two classes, got {num_instances} and {num_classes}")
        self.num_instances, self.num_classes = num_instances, num_classes
        self.average_from_epoch, self.keep_epochs = average_from_epoch, keep_epochs
        self.device = torch.device(device)
        nan = {"fill_value": float("nan"), "dtype": torch.float32, "device": self.device}
        zeros = {"dtype": torch.float32, "device": self.device}
        self._current = {k: torch.full((num_instances,), **nan) for k in FIELDS}
        self._current["rows"] = torch.full((num_instances, num_classes), **nan)
        self._sums = {k: torch.zeros_like(v, **zeros) for k, v in self._current.items()}
        self._counts = {k: torch.zeros(num_instances, dtype=torch.int32, device=self.device) for k in self._current}
        self.epoch: int | None = None
        self.epochs_averaged: list[int] = []
        self._per_epoch: list[Tensor] = []

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for v in self._current.values():
            v.fill_(float("nan"))

    @torch.no_grad()
    def record(self, index: Tensor, labels: Tensor, weights) -> None:
        """One batch: the instances' positions ``index``, their (given) ``labels`` and the step's
        :class:`~gdwlib.reweighting.StepWeights`."""
        if self.epoch is None:
            raise RuntimeError("call start_epoch(epoch) before the first record")
        index, labels = index.to(self.device), labels.to(self.device)
        self._current["loss"][index] = weights.losses.float().to(self.device)
        self._current["instance_weight"][index] = weights.w.float().to(self.device)
        if weights.omega_prime is not None:
            rows = weights.omega_prime.float().to(self.device)
            self._current["rows"][index] = rows
            self._current["target_weight"][index] = rows.gather(1, labels[:, None]).squeeze(1)

    def end_epoch(self) -> None:
        """Fold the epoch into the running means (if it is in the averaging window)."""
        if self.keep_epochs:
            self._per_epoch.append(self._current["target_weight"].clone())
        if self.epoch is not None and self.epoch >= self.average_from_epoch:
            for k, v in self._current.items():   # an instance not seen, or a weight the method has not, is NaN
                seen = ~torch.isnan(v) if v.dim() == 1 else ~torch.isnan(v).any(dim=1)
                self._sums[k] += torch.nan_to_num(v)
                self._counts[k] += seen.int()
            self.epochs_averaged.append(self.epoch)

    def arrays(self) -> dict[str, np.ndarray]:
        """The means over the averaging window (NaN for an instance never seen there), the
        number of epochs each mean is over, and, with ``keep_epochs``, ``target_weight_per_epoch``
        (epochs x instances)."""
        out = {}
        for k, v in self._sums.items():
            counts = self._counts[k].float()
            out[f"mean_{k}"] = (v / (counts[:, None] if v.dim() == 2 else counts)).cpu().numpy()   # 0/0: NaN
        out["epochs_averaged"] = self._counts["loss"].cpu().numpy()
        if self.keep_epochs:
            out["target_weight_per_epoch"] = (torch.stack(self._per_epoch) if self._per_epoch
                                              else torch.empty(0, self.num_instances)).cpu().numpy()
        return out

    def nbytes(self) -> int:
        """The bytes its tensors hold (the per-epoch targets of ``keep_epochs`` included)."""
        tensors = [*self._current.values(), *self._sums.values(), *self._counts.values(), *self._per_epoch]
        return sum(t.numel() * t.element_size() for t in tensors)

    def state_dict(self) -> dict:
        return {"sums": dict(self._sums), "counts": dict(self._counts), "epochs_averaged": list(self.epochs_averaged),
                "per_epoch": list(self._per_epoch)}

    def load_state_dict(self, state: dict) -> None:
        self._sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self._counts = {k: v.to(self.device) for k, v in state["counts"].items()}
        self.epochs_averaged = list(state["epochs_averaged"])
        self._per_epoch = [t.to(self.device) for t in state["per_epoch"]]
