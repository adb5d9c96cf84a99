"""Plots and small tables for the derivation notebooks (gradient flows, Eq. 3, Figure 2)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import Tensor


def _labels(num_classes: int, classes: Sequence[str] | None) -> list[str]:
    return list(classes) if classes is not None else [str(c) for c in range(num_classes)]


def plot_gradient_flows(d1_row: Tensor, target: int, classes: Sequence[str] | None = None, ax=None, title=None):
    """One instance's gradient flows ``D1 = p - y``: a bar per class, the labelled class in red.

    The labelled class's flow is negative (its logit is pushed up); every other flow is positive
    (each says "not this class").
    """
    ax = ax or plt.gca()
    values = d1_row.detach().cpu().double().numpy()
    colors = ["tab:red" if j == target else "tab:blue" for j in range(len(values))]
    ax.bar(range(len(values)), values, color=colors)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(values)), _labels(len(values), classes), rotation=45, ha="right")
    ax.set_ylabel(r"$D_1 = p - y$")
    ax.set_title(title or "gradient flows of one instance (red: labelled class)")
    return ax


def plot_eq3_terms(first: Tensor, second: Tensor, target: int, classes: Sequence[str] | None = None, ax=None):
    """Grouped bars of the two terms of Eq. 3 for one instance, and their sum ``omega (x) D1``."""
    ax = ax or plt.gca()
    a, b = first.detach().cpu().double().numpy(), second.detach().cpu().double().numpy()
    x = np.arange(len(a))
    ax.bar(x - 0.27, a, 0.27, label=r"$\omega_t (p'_j - y_j)$ (cross-entropy shaped)")
    ax.bar(x, b, 0.27, label=r"$(\sum_k \omega_k p_k - \omega_t)\, p'_j$")
    ax.bar(x + 0.27, a + b, 0.27, label=r"sum $= \omega_j (p_j - y_j)$", color="grey")
    ax.axhline(0, color="black", lw=0.8)
    names = _labels(len(a), classes)
    names[target] += " (label)"
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.legend(fontsize=8)
    return ax


def weights_frame(columns: Mapping[str, Tensor], classes: Sequence[str] | None = None) -> pd.DataFrame:
    """A classes-by-quantities table of one instance's rows (``omega``, ``g``, ``omega'``, ...)."""
    data = {k: v.detach().cpu().double().numpy() for k, v in columns.items()}
    n = len(next(iter(data.values())))
    return pd.DataFrame(data, index=pd.Index(_labels(n, classes), name="class"))


def draw_two_stage_scheme(ax=None):
    """Figure 2 of the paper inside the three-step loop: where the first- and second-stage
    class-level weights come from (Eq. 9, 11, 12) and how Step 2's back-propagation of the meta
    loss both updates the weighting network (Eq. 10) and yields the intermediate gradient."""
    ax = ax or plt.gca()
    ax.set_xlim(0, 12.6)
    ax.set_ylim(0, 6.6)
    ax.axis("off")
    w, h = 2.7, 1.1
    col = [0.1, 3.2, 6.3, 9.4]
    boxes = {
        "loss": (col[0], 3.6, r"losses $\ell_i$"),
        "vnet": (col[1], 3.6, "weighting\nnetwork $\\phi$"),
        "omega": (col[2], 3.6, "$w_i$, cloned C times:\n$\\omega_i = w_i\\,\\mathbf{1}$"),
        "step1": (col[3], 3.6, "Step 1: virtual\nstep $\\hat\\theta(\\phi)$ (Eq. 9)"),
        "meta": (col[3], 1.9, "meta loss\n$L_{meta}(\\hat\\theta)$"),
        "g": (col[2], 1.9, "$g_i = \\partial L_{meta}/\\partial \\omega_i$\n(within the BP)"),
        "omega2": (col[1], 1.9, "$\\omega'_i = \\omega_i \\ominus \\eta_\\omega g_i$\n(Eq. 11)"),
        "zm": (col[1], 0.2, "zero-mean\nconstraint (Eq. 4)"),
        "step3": (col[2], 0.2, "Step 3: update $\\theta$\nwith $\\omega'_i$ (Eq. 12)"),
        "phi": (col[1], 5.3, "Step 2: update $\\phi$\n(Eq. 10)"),
    }
    centres = {}
    for key, (x, y, text) in boxes.items():
        stage2 = key in ("g", "omega2", "zm", "step3")
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05",
                                    fc="#fde0c5" if stage2 else "#d6e6f5", ec="black", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10)
        centres[key] = (x, y, w, h)

    def arrow(a, b):
        xa, ya, wa, ha = centres[a]
        xb, yb, wb, hb = centres[b]
        if abs(ya - yb) < 0.1:  # same row: right/left edges
            start = (xa + wa, ya + ha / 2) if xb > xa else (xa, ya + ha / 2)
            end = (xb, yb + hb / 2) if xb > xa else (xb + wb, yb + hb / 2)
        else:  # different rows: bottom/top edges
            start, end = ((xa + wa / 2, ya), (xb + wb / 2, yb + hb)) if ya > yb else \
                ((xa + wa / 2, ya + ha), (xb + wb / 2, yb))
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1))

    for a, b in [("loss", "vnet"), ("vnet", "omega"), ("omega", "step1"), ("step1", "meta"),
                 ("meta", "g"), ("g", "omega2"), ("omega", "omega2"), ("omega2", "zm"), ("zm", "step3"),
                 ("phi", "vnet")]:
        arrow(a, b)
    # the same back-propagation reaches phi: around the top row, into the Step-2 update
    xm, ym, wm, hm = centres["meta"]
    xp, yp, wp, hp = centres["phi"]
    right, top = xm + wm + 0.3, yp + hp / 2
    ax.plot([xm + wm + 0.05, right, right], [ym + hm / 2, ym + hm / 2, top], color="black", lw=1)
    ax.add_patch(FancyArrowPatch((right, top), (xp + wp + 0.05, top), arrowstyle="-|>", mutation_scale=12, lw=1))
    ax.text((right + xp + wp) / 2, top + 0.15, "back-propagation (BP) of\nthe meta loss: $\\nabla_\\phi L_{meta}$",
            fontsize=10, ha="center", va="bottom")
    ax.text(0.1, 1.6, "blue: first stage,\nMW-Net's loop\norange: second\nstage (Steps 2-3)", fontsize=10)
    return ax
