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

Over many settings and seeds (:func:`comparison_frame`, the grid of
:func:`gdwlib.experiments.detection_settings`): :func:`metric_table`, :func:`accuracy_table` and
:func:`cost_table` per network, and :func:`verdict`, the comparison in words, where one detector beats another in a
setting only if it does so in every seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .config import DETECTORS, RunConfig
from .data.batches import ordered_batches

if TYPE_CHECKING:
    import pandas as pd

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


def setting_runs(config: RunConfig) -> list[RunConfig]:
    """Every run the comparison reads or makes for ``config``'s setting: BaseModel, MW-Net and GDW,
    the cross-validation folds, and BaseModel retrained without each detector's flagged set."""
    base = setting(config)
    return ([base, base.replace(method="MWNet"), base.replace(method="GDW"), *fold_configs(base)]
            + [base.replace(drop=d) for d in DETECTORS])


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
    done = {}   # each run the detectors read, with its result
    for detector in DETECTORS:
        sources = detector_configs(base, detector)
        own = sources if detector == "cleanlab" else sources[:1]   # the folds only fix the others' count
        done.update({c: train.run(c, progress=progress) for c in own})
        score = scores(detector, [train.run_directory(c) for c in own], data, model)
        retrained = train.run(base.replace(drop=detector), progress=progress)   # trains the folds if missing
        with np.load(train.run_directory(base.replace(drop=detector)) / "exports.npz") as f:
            dropped = len(f["dropped"])
        out["detectors"][detector] = {
            **detection_metrics(wrong, score), "flagged": dropped,
            "retrained_accuracy": retrained["final_accuracy"], "runs": len(own),
            "training_seconds": sum(done[c]["wall_time"] for c in own)}
    out["accuracy"] = {m: done[base.replace(method=m)]["final_accuracy"] for m in ("BaseModel", "MWNet", "GDW")}
    return out


METRICS = {"auroc": "AUROC", "auprc": "AUPRC", "precision_at_k": "precision at k"}
DETECTOR_NAMES = {"GDW": "GDW (1 - target weight)", "MWNet": "MW-Net (1 - weight)", "small-loss": "small loss",
                  "cleanlab": f"cleanlab ({FOLDS}-fold CV)"}
SHORT_NAMES = {"GDW": "GDW", "MWNet": "MW-Net", "small-loss": "small loss", "cleanlab": "cleanlab",
               "BaseModel": "BaseModel"}


def setting_label(config: RunConfig) -> str:
    """The setting in words: ``"uniform 40%"``, ``"flip 20%"``, ``"uniform 20%, long tail μ=0.1"``."""
    noise = f"{config.noise} {config.ratio:.0%}"
    return noise if config.imbalance >= 1 else f"{noise}, long tail μ={config.imbalance:g}"


def comparison_frame(settings: list[RunConfig], progress: bool = False) -> "pd.DataFrame":
    """:func:`compare` on each setting (one seed each), as one row per (setting, seed, detector),
    with the accuracies of BaseModel, MW-Net and GDW trained on the setting beside each row."""
    import pandas as pd

    rows = []
    for base in settings:
        out = compare(base, progress=progress)
        accuracy = {f"{m} accuracy": v for m, v in out["accuracy"].items()}
        for detector, d in out["detectors"].items():
            rows.append({"network": base.model, "setting": setting_label(base), "seed": base.seed,
                         "detector": detector, "noisy": out["noisy"], "instances": out["instances"],
                         **{k: d[k] for k in (*METRICS, "flagged", "retrained_accuracy", "runs", "training_seconds")},
                         **accuracy})
    return pd.DataFrame(rows)


def _mean_sd(values: "pd.Series", digits: int) -> str:
    mean = values.mean()
    return f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def metric_table(frame: "pd.DataFrame", network: str, metric: str) -> "pd.DataFrame":
    """One network's ``metric`` (a column of :func:`comparison_frame`: ``auroc``, ``auprc``,
    ``precision_at_k``, ``retrained_accuracy``) as mean ± standard deviation over the seeds, a row
    per detector and a column per setting."""
    import pandas as pd

    part = frame[frame.network == network]
    digits = 2 if metric == "retrained_accuracy" else 3
    cells = {(d, s): _mean_sd(g[metric], digits) for (d, s), g in part.groupby(["detector", "setting"], sort=False)}
    table = pd.Series(cells).unstack()[list(dict.fromkeys(part["setting"]))]
    return table.loc[list(dict.fromkeys(part["detector"]))].rename(index=SHORT_NAMES).rename_axis(None)


def accuracy_table(frame: "pd.DataFrame", network: str) -> "pd.DataFrame":
    """Per setting (columns), the test accuracy of BaseModel, MW-Net and GDW trained on the noisy
    set, and of BaseModel retrained without each detector's flagged instances (mean ± sd over
    seeds)."""
    import pandas as pd

    part = frame[frame.network == network]
    settings = list(dict.fromkeys(part["setting"]))
    first = part.drop_duplicates(["setting", "seed"])
    rows = {f"{SHORT_NAMES[m]}, trained on all": {s: _mean_sd(g[f"{m} accuracy"], 2)
                                                  for s, g in first.groupby("setting", sort=False)}
            for m in ("BaseModel", "MWNet", "GDW")}
    for detector, g in part.groupby("detector", sort=False):
        rows[f"BaseModel without {SHORT_NAMES[detector]}'s flagged"] = {
            s: _mean_sd(h["retrained_accuracy"], 2) for s, h in g.groupby("setting", sort=False)}
    return pd.DataFrame.from_dict(rows, orient="index")[settings]


def cost_table(frame: "pd.DataFrame", network: str) -> "pd.DataFrame":
    """How many labels are wrong and how many each detector flags, per setting, and the training
    runs each detector needed (mean wall seconds in all, over seeds)."""
    import pandas as pd

    part = frame[frame.network == network]
    settings = list(dict.fromkeys(part["setting"]))
    by = part.groupby("setting", sort=False)
    rows = {"wrong labels": by["noisy"].mean().round().astype(int).to_dict(),
            "flagged by each detector": by["flagged"].mean().round().astype(int).to_dict()}
    for detector, g in part.groupby("detector", sort=False):
        rows[f"{SHORT_NAMES[detector]}: training runs, s"] = {
            s: f"{int(h['runs'].iloc[0])} run{'s' if h['runs'].iloc[0] > 1 else ''}, {h['training_seconds'].mean():.0f} s"
            for s, h in g.groupby("setting", sort=False)}
    return pd.DataFrame.from_dict(rows, orient="index")[settings]


def _paired(frame: "pd.DataFrame", metric: str, a: str, b: str) -> "pd.Series":
    """Per setting, ``a``'s value minus ``b``'s, seed by seed (a column per seed)."""
    wide = frame.pivot_table(index=["setting", "seed"], columns="detector", values=metric, sort=False)
    return (wide[a] - wide[b]).unstack("seed")


def head_to_head(frame: "pd.DataFrame", metric: str, a: str, b: str) -> dict[str, list[str]]:
    """The settings where ``a`` beats ``b`` on ``metric`` in every seed, loses in every seed, or
    neither (mixed): with three seeds, a side that wins every seed by chance alone does so with
    probability 1/8."""
    return _by_sign(_paired(frame, metric, a, b))


def _by_sign(diff: "pd.DataFrame") -> dict[str, list[str]]:
    """The settings (rows) whose per-seed differences (columns) are all positive, all negative, or
    neither."""
    out = {"better": [], "worse": [], "mixed": []}
    for setting, row in diff.iterrows():
        out["better" if (row > 0).all() else "worse" if (row < 0).all() else "mixed"].append(setting)
    return out


def best_detectors(frame: "pd.DataFrame", metric: str = "auroc") -> "pd.Series":
    """Per setting, the detector with the highest mean ``metric`` over seeds."""
    means = frame.groupby(["setting", "detector"], sort=False)[metric].mean()
    return means.groupby(level="setting", sort=False).idxmax().map(lambda key: key[1])


def _settings(names: list[str]) -> str:
    return "none" if not names else "; ".join(names)


def verdict(frame: "pd.DataFrame", network_name: str | None = None) -> str:
    """The comparison on one network in words, every count computed from ``frame`` (that network's
    rows): GDW against cleanlab on AUROC and precision at k, seed by seed; the best detector per
    setting; and whether removing GDW's suspects and retraining beats GDW's own network."""
    seeds = frame["seed"].nunique()
    n = frame["setting"].nunique()
    count = f"{n} settings, {seeds} seed{'s' if seeds > 1 else ''} each"
    lines = [f"**{network_name}** ({count}):" if network_name else f"On {count}:"]
    for metric in ("auroc", "precision_at_k"):
        h = head_to_head(frame, metric, "GDW", "cleanlab")
        lines.append(f"- {METRICS[metric]}: GDW's weight beats cleanlab in every seed in {len(h['better'])} of {n} "
                     f"settings ({_settings(h['better'])}), loses in every seed in {len(h['worse'])} "
                     f"({_settings(h['worse'])}), and is mixed in {len(h['mixed'])} ({_settings(h['mixed'])}).")
    best = best_detectors(frame)
    counts = best.value_counts()
    lines.append("- The best detector by mean AUROC: " + ", ".join(
        f"{SHORT_NAMES[d]} in {k} setting{'s' if k > 1 else ''} ({_settings(list(best[best == d].index))})"
        for d, k in counts.items()) + ".")
    means = frame.groupby(["detector", "setting"], sort=False)["auroc"].mean()
    inverted = means[means < 0.5]
    if len(inverted):
        lines.append("- Worse than chance (mean AUROC below 0.5: the score ranks right labels above wrong ones): "
                     + "; ".join(f"{SHORT_NAMES[d]} in {s} ({v:.3f})" for (d, s), v in inverted.items()) + ".")
    gdw = frame[frame.detector == "GDW"].set_index(["setting", "seed"])
    gain = (gdw["retrained_accuracy"] - gdw["GDW accuracy"]).unstack("seed")
    signs = _by_sign(gain)
    ahead, behind, mean = signs["better"], signs["worse"], gain.mean(axis=1)
    lines.append(f"- BaseModel retrained without the instances GDW flags, against GDW's own network: more accurate in "
                 f"every seed in {len(ahead)} of {n} settings ({_settings(ahead)}), less accurate in every seed in "
                 f"{len(behind)} ({_settings(behind)}); the mean difference per setting ranges from {mean.min():+.2f} "
                 f"to {mean.max():+.2f} points.")
    return "\n".join(lines)
