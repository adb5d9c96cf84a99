"""The interface every method of the paper's tables implements, and BaseModel.

A method owns its network(s) and optimiser(s) and turns one training batch into one update;
the trainer (:mod:`gdwlib.train`) owns everything else: data, learning-rate schedule,
evaluation, checkpoints, progress and result files. Most methods only decide what flows back
into the logits, so :class:`LogitGradientMethod` reduces them to one function returning that
``(n, C)`` matrix.
"""
from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import NonFiniteLossError, check_finite  # noqa: F401 - NonFiniteLossError: gdwlib.methods exports it
from ..update import step_through_logits
from ..config import RunConfig
from ..data.batches import Batch, ordered_batches
from ..data.build import TrainingData
from ..results import read_model_state
from ..gradients import D1
from ..models import build_model


def cosine_lr(lr: float, epoch: int, epochs: int) -> float:
    """The public code's per-epoch cosine decay ``lr (1 + cos(pi e / E)) / 2``."""
    return lr * (1 + math.cos(math.pi * epoch / epochs)) / 2


def make_model(config: RunConfig, data) -> nn.Module:
    c, h, w = data.input_shape
    kwargs = {"weights_path": config.pretrained} if config.model == "resnet18" else {}
    return build_model(config.model, data.num_classes, c, h, **kwargs)


def sgd(model: nn.Module, config: RunConfig, lr: float | None = None) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=config.lr if lr is None else lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _option_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, Integral):
        return isinstance(value, Integral)
    return value is None or isinstance(value, Real)   # float options, and numbers whose default is None


def check_options(cls: type["Method"], config: RunConfig) -> None:
    """The named options of ``config`` exist for method ``cls`` and have its defaults' types."""
    unknown = set(dict(config.options)) - set(cls.options)
    if unknown:
        raise ValueError(f"{cls.name} has no option(s) {sorted(unknown)}; its options are {cls.options or 'none'}")
    for name, value in config.options:
        if not _option_ok(cls.options[name], value):
            raise ValueError(f"{cls.name}'s option {name} must be like its default {cls.options[name]!r}, "
                             f"got {value!r} ({type(value).__name__})")


class Method:
    """A training rule of the paper's tables (see the module docstring)."""

    name: ClassVar[str]
    uses_meta: ClassVar[bool] = False        # needs batches of the clean meta set every iteration
    records_weights: ClassVar[bool] = False  # reports weights to a WeightStats (Figures 3-6)
    options: ClassVar[dict[str, Any]] = {}   # named options (config.options) with their defaults
    instance_tensors: ClassVar[tuple[str, ...]] = ()  # per-instance tensors: checkpointed and exported
    state_objects: ClassVar[tuple[str, ...]] = ("model", "optimizer")  # attributes checkpointed by state_dict()
    revision: ClassVar[int] = 1              # raised when a fix changes the numbers: part of the run's identity

    def __init__(self, config: RunConfig, data, device: torch.device):
        check_options(type(self), config)
        self.config, self.data, self.device = config, data, device
        self.num_classes = data.num_classes
        self.model = make_model(config, data).to(device)
        self.optimizer = sgd(self.model, config)
        self.stats = None
        self.lr = config.lr

    @classmethod
    def requirements(cls, config: RunConfig) -> list[RunConfig]:
        """Runs whose results this run starts from (trained first by a sweep)."""
        return []

    def start_from(self, required: list[Path]) -> None:
        """Receive the run directories of the finished runs that :meth:`requirements` names, in
        its order (the trainer finishes them first), before any checkpoint is restored."""

    def option(self, name: str) -> Any:
        return self.config.option(name, self.options[name])

    # What the trainer iterates over. Methods with phases or other data (Fine-tuning, GLC)
    # override these instead of changing the training loop.
    def num_epochs(self) -> int:
        return self.config.epochs

    def learning_rate(self, epoch: int) -> float:
        """The public code's per-epoch cosine decay ``lr (1 + cos(pi e / E)) / 2``, or constant."""
        c = self.config
        return c.lr if c.schedule == "constant" else cosine_lr(c.lr, epoch, c.epochs)

    def batches(self, epoch: int) -> Iterator[Batch]:
        return self.data.train_batches(epoch)

    def iterations_per_epoch(self) -> int:
        return self.data.iterations_per_epoch()

    def start_epoch(self, epoch: int, lr: float) -> None:
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, batch: Batch, meta: Iterator[Batch] | None) -> Tensor:
        """One update from one training batch; returns the batch's (unweighted) training loss as
        a 0-dim tensor, left on the device (the trainer reads the epoch's losses at its end)."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The real forward of a training batch in train mode (BatchNorm statistics update here,
        once per iteration) and its plain cross-entropy with the training labels."""
        self.model.train()
        logits = self.model(batch.x)
        loss = F.cross_entropy(logits.detach(), batch.y)
        check_finite(loss)
        return logits, loss

    def end_epoch(self, epoch: int) -> None:
        """Called after each epoch's last step, before evaluation."""

    def eval_model(self) -> nn.Module:
        return self.model

    def state_dict(self) -> dict:
        return {**{k: getattr(self, k).state_dict() for k in self.state_objects},
                **{k: getattr(self, k).clone() for k in self.instance_tensors}}

    def load_state_dict(self, state: dict) -> None:
        for k in self.state_objects:
            getattr(self, k).load_state_dict(state[k])
        for k in self.instance_tensors:
            getattr(self, k).copy_(state[k])

    def exports(self) -> dict[str, np.ndarray]:
        """Learned per-instance quantities (indexed by the training set's instance index), saved
        beside the result."""
        return {k: getattr(self, k).cpu().numpy() for k in self.instance_tensors}


class LogitGradientMethod(Method):
    r"""A method defined by the matrix it sends into the logits: one forward, one backward."""

    def logit_gradient(self, logits: Tensor, batch: Batch) -> Tensor:
        """The ``(n, C)`` matrix ``dLoss/dlogits`` of the batch (already divided by n)."""
        raise NotImplementedError

    def train_step(self, batch: Batch, meta: Iterator[Batch] | None) -> Tensor:
        logits, loss = self.forward(batch)
        step_through_logits(self.optimizer, logits, self.logit_gradient(logits.detach(), batch))
        return loss


class BaseModel(LogitGradientMethod):
    r"""Plain cross-entropy on the (noisy or imbalanced) training set: the matrix sent into the logits is
    $G_i = (\mathbf p_i - \mathbf y_i) / n$.

    For the comparison of label-error detectors (``gdwlib.label_errors``) it can also train
    without one cross-validation fold and predict that fold (``folds``, ``fold``: the
    out-of-sample probabilities cleanlab needs), or without the instances a detector flags
    (``drop``: cleanlab's recipe of retraining on the data it cleaned)."""

    name = "BaseModel"

    @classmethod
    def requirements(cls, config: RunConfig) -> list[RunConfig]:
        from .. import label_errors

        return label_errors.detector_configs(config, config.drop) if config.drop else []

    def __init__(self, config: RunConfig, data, device: torch.device):
        super().__init__(config, data, device)
        self.full_train, self.dropped = data.train, None
        if config.folds is not None:
            from .. import label_errors

            fold = label_errors.fold_of(len(data.train), config.folds, config.seed)
            self.heldout = np.flatnonzero(fold == config.fold)
            self._train_on(np.flatnonzero(fold != config.fold))

    def _train_on(self, index: np.ndarray) -> None:
        """Keep only the training instances ``index`` (the meta and test sets stay)."""
        if not isinstance(self.data, TrainingData):
            raise ValueError(f"cross-validation and dropping instances need data held in memory, not {self.config.dataset}")
        self.data = dataclasses.replace(self.data, train=self.full_train.subset(index))

    def start_from(self, required: list[Path]) -> None:
        if self.config.drop is None:
            return
        from .. import label_errors

        model = None
        if self.config.drop == "small-loss":   # the setting's own BaseModel network
            model = make_model(self.config, self.data).to(self.device)
            model.load_state_dict(read_model_state(required[0], self.device))
        self.dropped = label_errors.flagged(self.config.drop, required, self.data, model)
        self._train_on(np.setdiff1d(np.arange(len(self.full_train)), self.dropped))

    def logit_gradient(self, logits: Tensor, batch: Batch) -> Tensor:
        return D1(logits, batch.y) / len(batch)

    @torch.no_grad()
    def exports(self) -> dict[str, np.ndarray]:
        if self.dropped is not None:
            return {"dropped": self.dropped}
        if self.config.folds is None:
            return super().exports()
        model = self.eval_model().eval()
        probs = [torch.softmax(model(b.x), 1).cpu()
                 for b in ordered_batches(self.full_train.subset(self.heldout), 500, self.data.pipeline)]
        return {"heldout_index": self.heldout, "heldout_probs": torch.cat(probs).numpy()}
