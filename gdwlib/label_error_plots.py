"""The chapter "GDW on your own data" in pictures: the most suspect images of a ``gdw fit`` run, the
learned weights of right and wrong labels, and each detector's scores on the book's grid."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from .label_errors import DETECTOR_NAMES, METRICS


def read_label_issues(path: str | Path) -> pd.DataFrame:
    """``label_issues.csv`` as a frame (most suspect first, as written)."""
    with open(path, newline="") as f:
        return pd.DataFrame(list(csv.DictReader(f))).astype({"score": float})


def suspects_grid(issues: pd.DataFrame, truth: Mapping[str, str], n: int = 16, columns: int = 8, base: Path | None = None):
    """The ``n`` most suspect images, each titled with its given and suggested label; ``truth``
    maps a path to its true class, and the title is red where the given label is really wrong."""
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.0 * rows))
    for ax, (_, row) in zip(np.ravel(axes), issues.head(n).iterrows()):
        path = Path(row["path"])
        with Image.open(base / path if base else path) as image:
            ax.imshow(np.asarray(image), cmap="gray")
        wrong = truth[row["path"]] != row["given"]
        ax.set_title(f"given {row['given']}\nsuggests {row['suggested']}", fontsize=9,
                     color="tab:red" if wrong else "black")
    for ax in np.ravel(axes):
        ax.axis("off")
    fig.tight_layout()
    return fig


def weight_histogram(weight: np.ndarray, is_wrong: np.ndarray, ax=None, label: str = "mean target weight"):
    """The learned weight of right and of wrong labels, as two histograms on one axis."""
    ax = ax or plt.gca()
    bins = np.linspace(np.nanmin(weight), np.nanmax(weight), 40)
    ax.hist(weight[~is_wrong], bins=bins, alpha=0.6, label=f"right label ({(~is_wrong).sum()})", color="tab:blue")
    ax.hist(weight[is_wrong], bins=bins, alpha=0.6, label=f"wrong label ({is_wrong.sum()})", color="tab:red")
    ax.set_xlabel(label)
    ax.set_ylabel("training images")
    ax.legend()
    return ax


def detection_plot(frame: pd.DataFrame, network: str, metrics=("auroc", "precision_at_k"), axes=None):
    """For one network, each detector's metric per setting: the mean over seeds as a bar, each seed
    as a dot."""
    data = frame[frame.network == network]
    settings = list(dict.fromkeys(data["setting"]))
    detectors = list(dict.fromkeys(data["detector"]))
    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 3.8), sharey=False)
    width = 0.8 / len(detectors)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for k, detector in enumerate(detectors):
            x = np.arange(len(settings)) + (k - (len(detectors) - 1) / 2) * width
            per = data[data.detector == detector].set_index("setting")[metric]
            ax.bar(x, [per.loc[[s]].mean() for s in settings], width, label=DETECTOR_NAMES[detector],
                   color=f"C{k}", alpha=0.8)
            for xi, s in zip(x, settings):
                ax.plot([xi] * len(per.loc[[s]]), per.loc[[s]], "k.", ms=3)
        ax.set_xticks(np.arange(len(settings)), settings, rotation=20, ha="right", fontsize=10)
        ax.set_ylabel(METRICS[metric], fontsize=11)
        low = data[metric].min()
        ax.set_ylim(max(0.0, low - 0.1), 1.0)
    np.atleast_1d(axes)[0].legend(fontsize=9, loc="lower left")
    return axes
