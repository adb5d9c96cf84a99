"""The label errors of the book's runs: each detector's score per training instance, its flagged
set, and the runs that produce them, where the noise was injected and the truth is known.

Detectors (:data:`gdwlib.config.DETECTORS`), each a score per training instance of a setting
(data set, noise, network, seed), higher meaning more likely mislabelled:

- ``GDW``: ``1 -`` the target class-level weight ``omega'_t`` of the setting's GDW run, averaged
  over its last ``LAST_EPOCHS`` epochs (``weights.npz``);
- ``MWNet``: the same with MW-Net's instance weight ``w``;
- ``small-loss``: the cross-entropy of the setting's BaseModel run's final network on each
  training label;
- ``cleanlab``: confident learning on out-of-sample probabilities from ``FOLDS``-fold
  cross-validation of BaseModel with the same network (``folds``/``fold`` runs, each trained
  without one fold and predicting it, ``exports.npz``), as cleanlab's own benchmarks do.

cleanlab flags a set of its own (``find_label_issues``); the other detectors flag as many of their
highest scores, so that every detector removes the same number of instances and a retrained
BaseModel (``drop=DETECTOR``) compares *which* instances each one finds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import RunConfig
from .data.batches import ordered_batches

FOLDS = 4
LAST_EPOCHS = 5


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """Each training instance's fold, ``0 .. folds-1``, balanced and drawn from ``seed``."""
    rng = np.random.default_rng([seed, 7_701])   # its own stream: the folds do not move the other draws
    return np.arange(n)[rng.permutation(n)] % folds


def setting(config: RunConfig) -> RunConfig:
    """The setting of ``config``, as the plain BaseModel run of its grid names it."""
    return config.replace(method="BaseModel", folds=None, fold=None, drop=None, options=())


def fold_configs(config: RunConfig, folds: int = FOLDS) -> list[RunConfig]:
    """The cross-validation runs behind cleanlab's probabilities for ``config``'s setting."""
    base = setting(config)
    return [base.replace(folds=folds, fold=k) for k in range(folds)]


def detector_configs(config: RunConfig, detector: str) -> list[RunConfig]:
    """The runs ``detector`` reads for ``config``'s setting (cleanlab's folds always: they fix how
    many instances every detector flags)."""
    base = setting(config)
    own = {"GDW": [base.replace(method="GDW")], "MWNet": [base.replace(method="MWNet")], "small-loss": [base],
           "cleanlab": []}[detector]
    return own + fold_configs(config)


def heldout_probabilities(fold_dirs: list[Path], n: int) -> np.ndarray:
    """The (n, C) out-of-sample probabilities assembled from the fold runs' ``exports.npz``."""
    probs = None
    for directory in fold_dirs:
        with np.load(directory / "exports.npz") as f:
            index, p = f["heldout_index"], f["heldout_probs"]
        if probs is None:
            probs = np.full((n, p.shape[1]), np.nan)
        probs[index] = p
    if probs is None or np.isnan(probs).any():
        raise ValueError(f"the fold runs in {[str(d) for d in fold_dirs]} do not predict every training instance")
    return probs


@torch.no_grad()
def final_losses(model: torch.nn.Module, data) -> np.ndarray:
    """Each training instance's cross-entropy on its given label under ``model`` (eval mode,
    without augmentation): the small-loss score."""
    model.eval()
    return torch.cat([F.cross_entropy(model(b.x), b.y, reduction="none").cpu()
                      for b in ordered_batches(data.train, 500, data.pipeline)]).numpy()


def scores(detector: str, dirs: list[Path], data, model: torch.nn.Module | None = None) -> np.ndarray:
    """``detector``'s score per training instance from its runs' directories (in the order of
    :func:`detector_configs`); ``model``: the BaseModel network, for ``small-loss``."""
    from . import detection

    n = len(data.train)
    if detector in ("GDW", "MWNet"):
        with np.load(dirs[0] / "weights.npz") as f:
            weights = f["target_weight" if detector == "GDW" else "instance_weight"][-LAST_EPOCHS:]
        return detection.weight_score(weights)
    if detector == "small-loss":
        return final_losses(model, data)
    probs = heldout_probabilities(dirs, n)
    return detection.cleanlab_issues(data.train.labels.cpu().numpy(), probs).score


def flagged(detector: str, dirs: list[Path], data, model: torch.nn.Module | None = None) -> np.ndarray:
    """The training instances ``detector`` flags (indices, ascending): cleanlab's own set, or as
    many of the detector's highest scores."""
    from . import detection

    fold_dirs = dirs[-FOLDS:]
    found = detection.cleanlab_issues(data.train.labels.cpu().numpy(),
                                      heldout_probabilities(fold_dirs, len(data.train))).flagged
    if detector == "cleanlab":
        return np.flatnonzero(found)
    score = scores(detector, dirs, data, model)
    return np.sort(np.argsort(-score, kind="stable")[:int(found.sum())])


def compare(config: RunConfig, progress: bool = False) -> dict:
    """Every detector on ``config``'s setting, where the truth is known: AUROC, AUPRC and
    precision at k (:func:`gdwlib.detection.detection_metrics`), the final accuracy of BaseModel
    retrained without the flagged instances, and the compute each used (its runs and their
    training seconds, the retraining not counted). Trains whatever is missing."""
    from . import train
    from .data.build import build_data
    from .detection import detection_metrics
    from .methods.base import make_model
    from .results import read_model_state

    base = setting(config)
    data = build_data(base)
    wrong = (data.train.labels != data.train.true_labels).cpu().numpy()
    train.run(base, progress=progress)
    device = train.resolve_device(base.device)
    model = make_model(base, data).to(device)
    model.load_state_dict(read_model_state(train.run_directory(base), device))
    out = {"noisy": int(wrong.sum()), "instances": len(wrong), "detectors": {}}
    for detector in ("GDW", "MWNet", "small-loss", "cleanlab"):
        sources = detector_configs(base, detector)
        own = sources if detector == "cleanlab" else sources[:1]
        results = [train.run(c, progress=progress) for c in sources]
        score = scores(detector, [train.run_directory(c) for c in sources], data, model)
        retrained = train.run(base.replace(drop=detector), progress=progress)
        with np.load(train.run_directory(base.replace(drop=detector)) / "exports.npz") as f:
            dropped = len(f["dropped"])
        out["detectors"][detector] = {
            **detection_metrics(wrong, score), "flagged": dropped,
            "retrained_accuracy": retrained["final_accuracy"], "runs": len(own),
            "training_seconds": sum(r["wall_time"] for r in results[:len(own)])}
    out["accuracy"] = {m: train.run(base.replace(method=m), progress=progress)["final_accuracy"]
                       for m in ("BaseModel", "MWNet", "GDW")}
    return out
