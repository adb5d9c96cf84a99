"""Tables 2-4 as plots: test accuracy against the noise ratio or the imbalance factor.

One panel per data set of ours, then one per data set of the paper's, side by side: one line per
method with error bars of one standard deviation over seeds (ours: the runs' final accuracies;
the paper's: the standard deviations it prints), GDW, MW-Net and BaseModel drawn bold and in
colour, every other method thin and grey. The imbalance factor is drawn on a log scale, from
balanced (1) to the most imbalanced, so that the harder setting is to the right in every panel.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .experiments import DATASET_NAMES
from .report import paper_results, summarize

EMPHASISED = {"GDW": "tab:red", "MWNet": "tab:blue", "BaseModel": "black"}


def level_of(column: str) -> float:
    """The numeric level of a column key, ``"cifar10/0.4"`` -> 0.4."""
    return float(column.rsplit("/", 1)[1])


def _series(points: dict[str, tuple[float, float]], kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std) sorted from the easiest setting to the hardest."""
    levels = sorted(points, key=level_of, reverse=(kind == "imbalance factor"))
    x = np.array([level_of(c) for c in levels])
    mean = np.array([points[c][0] for c in levels], dtype=float)
    std = np.array([points[c][1] for c in levels], dtype=float)
    return x, mean, std


def _draw(ax, method: str, x, mean, std) -> None:
    bold = method in EMPHASISED
    ax.errorbar(x, mean, yerr=np.nan_to_num(std), label=method, marker="o", ms=4 if bold else 2.5, capsize=3,
                lw=2.2 if bold else 0.9, color=EMPHASISED.get(method, "0.6"), alpha=1.0 if bold else 0.8,
                zorder=3 if bold else 2)


def _axes_style(ax, kind: str, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(kind)
    if kind == "imbalance factor":
        ax.set_xscale("log")
        ax.invert_xaxis()
    ax.grid(alpha=0.3)


def accuracy_curves(runs: pd.DataFrame, table_key: str, methods: list[str], kind: str):
    """The figure of one table: ``runs`` from :func:`gdwlib.report.collect`, ``table_key`` the
    paper's key (``"table2_uniform_noise"``, ...), ``kind`` the x axis ("noise ratio" or
    "imbalance factor")."""
    summary = summarize(runs).reset_index()
    ours = {d: g for d, g in summary.groupby(summary["column"].str.rsplit("/", n=1).str[0], sort=False)}
    paper = paper_results()[table_key]
    paper_sets = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in paper["columns"]))
    fig, axes = plt.subplots(1, len(ours) + len(paper_sets), figsize=(3.6 * (len(ours) + len(paper_sets)), 3.4),
                             squeeze=False)
    axes = axes[0]
    for ax, (dataset, group) in zip(axes, ours.items()):
        for method in methods:
            rows = group[group["method"] == method]
            if rows["n"].sum():
                _draw(ax, method, *_series({r.column: (r.mean, r.std) for r in rows.itertuples()}, kind))
        _axes_style(ax, kind, f"ours: {DATASET_NAMES.get(dataset, dataset)}")
        ax.set_ylabel("test accuracy (%)")
    for ax, dataset in zip(axes[len(ours):], paper_sets):
        for method in methods:
            cells = paper["rows"].get(method, {})
            points = {c: (v["mean"], v.get("std", np.nan)) for c, v in cells.items()
                      if c.startswith(dataset + "/") and v is not None and v.get("mean") is not None}
            if points:
                _draw(ax, method, *_series(points, kind))
        _axes_style(ax, kind, f"the paper's: {DATASET_NAMES.get(dataset, dataset)}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
