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

from .book import FIGURE_WIDTH_IN
from .label_errors import DETECTOR_NAMES, METRICS


def read_label_issues(path: str | Path) -> pd.DataFrame:
    """``label_issues.csv`` as a frame (most suspect first, as written)."""
    with open(path, newline="") as f:
        return pd.DataFrame(list(csv.DictReader(f))).astype({"score": float})


def suspects_grid(issues: pd.DataFrame, truth: Mapping[str, str], n: int = 16, columns: int = 4):
    """The ``n`` most suspect images, each titled with its given and suggested label; ``truth``
    maps a path to its true class, and the title is red where the given label is really wrong."""
    rows = -(-n // columns)
    side = FIGURE_WIDTH_IN / columns
    fig, axes = plt.subplots(rows, columns, figsize=(FIGURE_WIDTH_IN, 1.2 * side * rows))
    for ax, (_, row) in zip(np.ravel(axes), issues.head(n).iterrows()):
        with Image.open(row["path"]) as image:
            ax.imshow(np.asarray(image), cmap="gray")
        wrong = truth[row["path"]] != row["given"]
        ax.set_title(f"given {row['given']}\nsuggests {row['suggested']}", fontsize=11,
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


def detection_plot(frame: pd.DataFrame, network: str, metrics=("auroc", "precision_at_k")):
    """For one network, each detector's metric per setting (one panel per metric): the mean over
    seeds as a bar, each seed as a dot."""
    data = frame[frame.network == network]
    settings = list(dict.fromkeys(data["setting"]))
    detectors = list(dict.fromkeys(data["detector"]))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(FIGURE_WIDTH_IN, 3.3 * len(metrics)), sharex=True)
    width = 0.8 / len(detectors)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for k, detector in enumerate(detectors):
            x = np.arange(len(settings)) + (k - (len(detectors) - 1) / 2) * width
            per = data[data.detector == detector].groupby("setting", sort=False)[metric]
            ax.bar(x, [per.get_group(s).mean() for s in settings], width, label=DETECTOR_NAMES[detector],
                   color=f"C{k}", alpha=0.85)
            for xi, s in zip(x, settings):
                ax.plot([xi] * len(per.get_group(s)), per.get_group(s), "k.", ms=4)
        ax.set_ylabel(METRICS[metric], fontsize=12)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=11)
        ax.grid(axis="y", alpha=0.3)
    axes = np.atleast_1d(axes)
    axes[-1].set_xticks(np.arange(len(settings)), [s.replace(", ", ",\n") for s in settings], fontsize=11)
    axes[0].legend(fontsize=10, ncol=2, loc="lower left", framealpha=0.9)
    fig.tight_layout()
    return fig
