"""Tables 2-4 as plots: test accuracy against the noise ratio or the imbalance factor.

Our data sets in the left column, the paper's in the right one, one panel each: one line per
method with error bars of one standard deviation over seeds (ours: the runs' final accuracies;
the paper's: the standard deviations it prints). Every method has its own colour and marker;
GDW, MW-Net and BaseModel are drawn bold in red, blue and black, the others thin. The imbalance
factor is drawn on a log scale, from balanced (1) to the most imbalanced, so that the harder
setting is to the right in every panel.

The figure is made for the book's page: at most :data:`gdwlib.book.COLUMN_PX` pixels wide, so
that the browser shows it at its own size, with every text at the body text's size or larger.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .book import COLUMN_PX, FIGURE_DPI, FIGURE_FONT_PT
from .experiments import DATASET_NAMES
from .report import paper_results, summarize

EMPHASISED = {"GDW": "tab:red", "MWNet": "tab:blue", "BaseModel": "black"}
# Colours and markers for the other methods, in the order a figure meets them (none red, blue or black).
OTHERS = [("tab:orange", "s"), ("tab:green", "^"), ("tab:purple", "v"), ("tab:brown", "D"), ("tab:pink", "P"),
          ("tab:olive", "X"), ("tab:cyan", "<"), ("tab:gray", ">"), ("gold", "h")]
PANEL_HEIGHT_IN = 2.7


def level_of(column: str) -> float:
    """The numeric level of a column key, ``"cifar10/0.4"`` -> 0.4."""
    return float(column.rsplit("/", 1)[1])


def method_styles(methods: list[str]) -> dict[str, dict]:
    """Line style of each method: the emphasised three bold in their own colours, every other
    method thin, with the next unused colour and marker."""
    others = iter(OTHERS)
    styles = {}
    for method in methods:
        if method in EMPHASISED:
            styles[method] = {"color": EMPHASISED[method], "marker": "o", "lw": 2.6, "ms": 6, "zorder": 3}
        else:
            color, marker = next(others)
            styles[method] = {"color": color, "marker": marker, "lw": 1.3, "ms": 5, "zorder": 2}
    return styles


def _series(points: dict[str, tuple[float, float]], kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std) sorted from the easiest setting to the hardest."""
    levels = sorted(points, key=level_of, reverse=(kind == "imbalance factor"))
    x = np.array([level_of(c) for c in levels])
    mean = np.array([points[c][0] for c in levels], dtype=float)
    std = np.array([points[c][1] for c in levels], dtype=float)
    return x, mean, std


def _draw(ax, method: str, style: dict, x, mean, std) -> None:
    ax.errorbar(x, mean, yerr=np.nan_to_num(std), label=method, capsize=3, **style)


def _axes_style(ax, kind: str, title: str, levels: list[float]) -> None:
    ax.set_title(title, fontsize=FIGURE_FONT_PT)
    ax.set_xlabel(kind, fontsize=FIGURE_FONT_PT)
    ax.set_ylabel("test accuracy (%)", fontsize=FIGURE_FONT_PT)
    if kind == "imbalance factor":
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.minorticks_off()
    ax.set_xticks(levels, [f"{v:g}" for v in levels])   # the table's settings, not a generic scale
    ax.tick_params(labelsize=FIGURE_FONT_PT)
    ax.grid(alpha=0.3)


def _layout(n_ours: int, n_paper: int):
    """Figure and axes: ours down the left column, the paper's down the right one; the legend
    goes into the first free cell of the left column, or below the panels if there is none."""
    rows = max(n_ours, n_paper)
    width = COLUMN_PX / FIGURE_DPI - 0.2   # Jupyter's bbox_inches="tight" adds 0.1 in on either side
    fig, grid = plt.subplots(rows, 2, figsize=(width, PANEL_HEIGHT_IN * rows), dpi=FIGURE_DPI, squeeze=False)
    for ax in [*grid[n_ours:, 0], *grid[n_paper:, 1]]:
        ax.axis("off")
    spare = grid[n_ours, 0] if n_ours < rows else None
    return fig, list(grid[:n_ours, 0]), list(grid[:n_paper, 1]), spare


def accuracy_curves(runs: pd.DataFrame, table_key: str, methods: list[str], kind: str):
    """The figure of one table: ``runs`` from :func:`gdwlib.report.collect`, ``table_key`` the
    paper's key (``"table2_uniform_noise"``, ...), ``kind`` the x axis ("noise ratio" or
    "imbalance factor")."""
    summary = summarize(runs).reset_index()
    ours = {d: g for d, g in summary.groupby(summary["column"].str.rsplit("/", n=1).str[0], sort=False)}
    paper = paper_results()[table_key]
    paper_sets = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in paper["columns"]))
    styles = method_styles(methods)
    fig, our_axes, paper_axes, spare = _layout(len(ours), len(paper_sets))
    for ax, (dataset, group) in zip(our_axes, ours.items()):
        for method in methods:
            rows = group[group["method"] == method]
            if rows["n"].sum():
                points = {r.column: (r.mean, r.std) for r in rows.itertuples()}
                _draw(ax, method, styles[method], *_series(points, kind))
        levels = sorted(set(map(level_of, group["column"])))
        _axes_style(ax, kind, f"ours: {DATASET_NAMES.get(dataset, dataset)}", levels)
    for ax, dataset in zip(paper_axes, paper_sets):
        for method in methods:
            cells = paper["rows"].get(method, {})
            points = {c: (v["mean"], v.get("std", np.nan)) for c, v in cells.items()
                      if c.startswith(dataset + "/") and v is not None and v.get("mean") is not None}
            if points:
                _draw(ax, method, styles[method], *_series(points, kind))
        levels = sorted({level_of(c) for c in paper["columns"] if c.startswith(dataset + "/")})
        _axes_style(ax, kind, f"the paper's: {DATASET_NAMES.get(dataset, dataset)}", levels)
    handles = {label: h for ax in fig.axes for h, label in zip(*ax.get_legend_handles_labels())}
    entries = [m for m in methods if m in handles]
    if spare is not None:
        spare.legend([handles[m] for m in entries], entries, loc="center", fontsize=FIGURE_FONT_PT, frameon=False,
                     ncol=2 if len(entries) > 5 else 1)
    else:
        fig.legend([handles[m] for m in entries], entries, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   fontsize=FIGURE_FONT_PT, frameon=False, ncol=3)
    fig.tight_layout()
    return fig
