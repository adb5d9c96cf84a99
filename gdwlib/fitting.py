"""``gdwlib.fit``: your classifier, trained with GDW (or MW-Net, L2RW, BaseModel) in one call.

    result = gdwlib.fit(model, train_set, meta_set, test=test_set, out="fit-out", epochs=20)

``train_set`` (and ``meta_set``, ``test``) are ``torch.utils.data.Dataset``s yielding
``(x, y)``; the meta set may instead be carved from the training set (``meta_per_class=`` or
``trusted=``, :func:`gdwlib.data.split.carve_meta_set`). The training is the book's trainer
(:func:`gdwlib.train.train_epochs`): per-epoch cosine schedule, evaluation after every epoch (on
``test``, else on the meta set), a progress bar, an atomic checkpoint after every epoch, and the
same call after a Ctrl-C or a ``kill -9`` resumes and gives the numbers of an uninterrupted run.
The real update uses SGD (``lr``, ``momentum``, ``weight_decay``: the paper's) unless
``optimizer`` builds another from the parameters; each step is :mod:`gdwlib.reweighting`'s.

``out`` receives ``model.pt`` (the trained state dict), ``weights.npz`` (each training instance's
learned weights averaged over the last ``average_last`` epochs, :class:`InstanceWeights`),
``label_issues.csv`` (every training instance, most suspect first, :mod:`gdwlib.detection`) and,
last, ``result.json`` (settings, accuracy per epoch, time). A finished ``out`` is read back, not
trained again; one that holds a fit with other settings is refused.
"""
from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import detection, reweighting
from .data.batches import stream_seed
from .data.loaders import Indexed, LoaderData
from .data.split import carve_meta_set
from .instance_weights import InstanceWeights
from .methods.base import cosine_lr
from .results import code_version, device_info, read_json, save_npz, save_torch, write_json
from .train import _exclusive, resolve_device, seed_everything, train_epochs

REWEIGHTERS = {"GDW": reweighting.GDW, "MWNet": reweighting.MWNet, "L2RW": reweighting.L2RW,
               "BaseModel": reweighting.BaseModel}
SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """What a fit computes (written to ``result.json``; a rerun with other settings is refused)."""

    method: str = "GDW"
    epochs: int = 10
    batch_size: int = 100
    meta_batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    lookahead_lr: float | None = None
    average_last: int = 5
    keep_epochs: bool = False
    seed: int = 1
    options: dict = dataclasses.field(default_factory=dict)   # the method's own, e.g. outer_lr for GDW
    optimizer: str = "SGD"   # the class of the real optimiser (a custom one is built by the caller's factory)

    def check(self) -> None:
        if self.method not in REWEIGHTERS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(REWEIGHTERS)}")
        for name in ("epochs", "batch_size", "meta_batch_size", "average_last"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive whole number, got {getattr(self, name)!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise ValueError(f"`lr` must be positive, got {self.lr}")
        known = method_options(self.method)
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for {self.method}; it takes {sorted(known)}")


def method_options(method: str) -> set[str]:
    """The settings a method's reweighter takes by name (``outer_lr``, ``vnet_lr``, ...), less
    those ``fit`` sets itself."""
    names = set()
    for cls in REWEIGHTERS[method].__mro__:
        if "__init__" in vars(cls):
            names |= {n for n, p in inspect.signature(cls.__init__).parameters.items() if p.kind == p.KEYWORD_ONLY}
    return names - {"lookahead_lr", "recorder", "vnet", "vnet_optimizer"}


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The labels of ``dataset``: its ``targets`` (torchvision's data sets), the second tensor of
    a TensorDataset, or else read item by item."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is None and isinstance(dataset, torch.utils.data.TensorDataset):
        targets = dataset.tensors[1]
    if targets is None:
        targets = [dataset[i][1] for i in range(len(dataset))]
    return np.asarray(torch.as_tensor(targets).cpu(), dtype=np.int64)


def instance_paths(dataset: Dataset) -> list[str] | None:
    """Each instance's file (torchvision's ImageFolder and DatasetFolder keep them), else None."""
    if isinstance(dataset, Subset):
        paths = instance_paths(dataset.dataset)
        return None if paths is None else [paths[i] for i in dataset.indices]
    samples = getattr(dataset, "samples", None)
    return [str(p) for p, _ in samples] if samples is not None else None


class FitTraining:
    """``fit``'s side of the trainer's method interface (:func:`gdwlib.train.train_epochs`): the
    user's model, the real optimiser, a reweighter and its recorder."""

    stats = None   # the figures' statistics are the book's; fit keeps InstanceWeights instead

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, reweighter, recorder: InstanceWeights,
                 data: LoaderData, settings: FitSettings, device: torch.device):
        self.model, self.optimizer, self.reweighter, self.recorder = model, optimizer, reweighter, recorder
        self.data, self.settings, self.device = data, settings, device
        self.uses_meta = reweighter.uses_meta
        self._initial_lrs = [g["lr"] for g in optimizer.param_groups]

    def num_epochs(self) -> int:
        return self.settings.epochs

    def _factor(self, epoch: int) -> float:
        return 1.0 if self.settings.schedule == "constant" else cosine_lr(1.0, epoch, self.settings.epochs)

    def learning_rate(self, epoch: int) -> float:
        return self._initial_lrs[0] * self._factor(epoch)

    def start_epoch(self, epoch: int, lr: float) -> None:
        for group, initial in zip(self.optimizer.param_groups, self._initial_lrs):
            group["lr"] = initial * self._factor(epoch)
        self.recorder.start_epoch(epoch)

    def batches(self, epoch: int):
        return self.data.train_batches(epoch)

    def iterations_per_epoch(self) -> int:
        return self.data.iterations_per_epoch()

    def train_step(self, batch, meta):
        m = next(meta) if meta is not None else None
        return self.reweighter.step(batch.x, batch.y, m.x if m else None, m.y if m else None, index=batch.index)

    def end_epoch(self, epoch: int) -> None:
        self.recorder.end_epoch()

    def eval_model(self) -> nn.Module:
        return self.model

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "reweighter": self.reweighter.state_dict(), "recorder": self.recorder.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.reweighter.load_state_dict(state["reweighter"])
        self.recorder.load_state_dict(state["recorder"])


def _splits(train: Dataset, meta, meta_per_class, trusted, seed: int) -> tuple[Dataset, Dataset, np.ndarray]:
    """The training part (yielding indices into ``train``), the meta set, and all training labels."""
    if isinstance(meta, DataLoader):
        meta = meta.dataset
    if sum(x is not None for x in (meta, meta_per_class, trusted)) != 1:
        raise ValueError("give the meta set in exactly one way: `meta` (a Dataset), `meta_per_class` (a budget per "
                         "class, drawn from the training set) or `trusted` (checked indices of the training set)")
    labels = dataset_labels(train)
    if meta is not None:
        return Indexed(train), meta, labels
    meta_idx, train_idx = carve_meta_set(labels, per_class=meta_per_class, trusted=trusted, seed=seed)
    return Subset(Indexed(train), train_idx.tolist()), Subset(train, meta_idx.tolist()), labels


@torch.no_grad()
def predicted_probabilities(model: nn.Module, data: LoaderData, dataset: Dataset) -> np.ndarray:
    """The model's class probabilities (eval mode) for every item of ``dataset``, in order."""
    model.eval()
    probs = [torch.softmax(model(b.x), 1).cpu() for b in data.ordered(dataset)]
    return torch.cat(probs).numpy()


def _label_issues(out: Path, settings: FitSettings, weights: dict, model, data: LoaderData, train_part: Dataset,
                  labels: np.ndarray, paths: list[str] | None, names: list[str] | None) -> None:
    """Every training instance, most suspect first: the learned target weight (GDW), instance
    weight (MW-Net, L2RW) or loss (BaseModel), averaged over the last epochs; the suggested
    label is the final model's most probable class other than the given one."""
    index = np.asarray(train_part.indices) if isinstance(train_part, Subset) else np.arange(len(train_part))
    if settings.method == "GDW":
        score = detection.weight_score(weights["mean_target_weight"][index])
    elif settings.method == "BaseModel":
        score = detection.loss_score(weights["mean_loss"][index])
    else:
        score = detection.weight_score(weights["mean_instance_weight"][index])
    probs = predicted_probabilities(model, data, train_part)
    probs[np.arange(len(index)), labels[index]] = -1.0
    given, suggested = labels[index], probs.argmax(1)
    if names:
        given, suggested = np.array(names)[given], np.array(names)[suggested]
    detection.write_label_issues(out / "label_issues.csv", score, given, suggested,
                                 paths=[paths[i] for i in index] if paths else index.tolist())


def fit(model: nn.Module, train: Dataset, meta: Dataset | DataLoader | None = None, *, out: str | Path,
        test: Dataset | None = None, method: str = "GDW", meta_per_class: int | None = None, trusted=None,
        epochs: int = 10, batch_size: int = 100, meta_batch_size: int = 100, lr: float = 0.1, momentum: float = 0.9,
        weight_decay: float = 5e-4, optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
        schedule: str = "cosine", lookahead_lr: float | None = None, average_last: int = 5, keep_epochs: bool = False,
        seed: int = 1, num_classes: int | None = None, device: str = "auto", workers: int = 0,
        paths: list[str] | None = None, class_names: list[str] | None = None, progress: bool = True,
        **options) -> dict:
    """Train ``model`` on ``train`` with ``method`` and write the results to ``out`` (see the
    module docstring); returns the result (what ``result.json`` holds). ``paths`` name the
    training instances in ``label_issues.csv`` (default: an ImageFolder's files, else the index),
    ``class_names`` its labels (default: an ImageFolder's classes, else the numbers)."""
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    probe = optimizer([torch.zeros(1, requires_grad=True)]) if optimizer is not None else None   # its class, cheaply
    settings = FitSettings(method, epochs, batch_size, meta_batch_size, lr, momentum, weight_decay, schedule,
                           lookahead_lr, average_last, keep_epochs, seed, dict(options),
                           type(probe).__name__ if probe is not None else "SGD")
    settings.check()
    train_part, meta_set, labels = _splits(train, meta, meta_per_class, trusted, seed)
    meta_labels = dataset_labels(meta_set)
    classes = num_classes or int(max(labels.max(), meta_labels.max())) + 1
    missing = sorted(set(range(classes)) - set(meta_labels.tolist()))
    if missing:
        raise ValueError(f"the meta set has no instance of class(es) {missing}: GDW's meta set must cover every class")
    device = resolve_device(device)
    data = LoaderData(train_part, Indexed(meta_set), Indexed(test if test is not None else meta_set), num_classes=classes,
                      batch_size=batch_size, meta_batch_size=meta_batch_size, seed=seed, device=device,
                      workers=workers)
    out = Path(out)
    with _exclusive(out):
        done = out / "result.json"
        if done.exists():
            result = read_json(done)
            if result.get("settings") != dataclasses.asdict(settings):
                raise ValueError(f"{out} holds a fit with other settings ({done}); choose another `out` or delete it")
            return result

        def fresh() -> FitTraining:
            model.load_state_dict(initial)
            model.to(device)
            seed_everything(stream_seed(seed, 0, "init") % 2**32)   # the weighting network's initial weights
            opt = optimizer(model.parameters()) if optimizer is not None else torch.optim.SGD(
                model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
            recorder = InstanceWeights(len(labels), classes, average_from_epoch=max(0, epochs - average_last),
                                       keep_epochs=keep_epochs, device=device)
            rw = REWEIGHTERS[method](model, opt, lookahead_lr=lookahead_lr, recorder=recorder, **options)
            return FitTraining(model, opt, rw, recorder, data, settings, device)

        training, history, elapsed, resumed = train_epochs(fresh, data, out / "checkpoint.pt", seed=seed, name=method,
                                                           desc=f"fit {method}", progress=progress)
        weights = training.recorder.arrays()
        save_torch(out / "model.pt", model.state_dict())
        save_npz(out / "weights.npz", weights)
        names = class_names or getattr(train, "classes", None)
        _label_issues(out, settings, weights, model, data, train_part, labels, paths or instance_paths(train), names)
        result = {"settings": dataclasses.asdict(settings), "code": code_version(), "device": device_info(device),
                  "num_classes": classes, "sizes": data.info, "evaluated_on": "test" if test is not None else
                  "meta (no test set given)", "history": history,
                  "final_accuracy": history[-1]["test_accuracy"],
                  "wall_time": elapsed, "resumed_after_epochs": resumed,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "files": {"model": "model.pt", "weights": "weights.npz", "label_issues": "label_issues.csv"}}
        write_json(done, result)
        (out / "checkpoint.pt").unlink(missing_ok=True)
        return result

