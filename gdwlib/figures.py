"""Figures 3-6 of the paper, drawn from the weight statistics our runs recorded
(``weights.npz`` beside each GDW / MW-Net result; see :mod:`gdwlib.stats`)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .config import RunConfig
from .data.build import build_data
from .data.fashion_mnist import CLASSES as FASHION_CLASSES
from .profiles import describe_override
from .report import DATASET_NAMES, MODEL_NAMES
from .results import write_bytes
from .stats import CATEGORIES
from .train import find_result, run_directory

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def weights(config: RunConfig) -> dict[str, np.ndarray]:
    """The recorded weight statistics of a finished GDW or MW-Net run."""
    with np.load(run_directory(config) / "weights.npz") as f:
        return dict(f)


def class_names(config: RunConfig) -> list[str]:
    names = {"fashion-mnist": FASHION_CLASSES, "cifar10": CIFAR10_CLASSES}.get(config.dataset)
    return list(names) if names else [str(c) for c in range(config.num_classes)]


def describe_run(config: RunConfig) -> str:
    """A caption naming the run a figure is drawn from, from its result file."""
    r = find_result(config)
    c = r["config"]
    setting = (f"{c['ratio']:.0%} {c['noise']} noise" if c["noise"] != "none" else "clean labels")
    if c["imbalance"] < 1:
        setting += f", long-tailed with mu = {c['imbalance']:g}"
    warning = describe_override(c.get("override"))
    return ((f"**{warning}.** " if warning else "") + f"{c['method']} on {DATASET_NAMES.get(c['dataset'], c['dataset'])} ({setting}), "
            f"{MODEL_NAMES.get(c['model'], c['model'])}, {r['data']['train_size']:,} training images, "
            f"{c['epochs']} epochs, seed {c['seed']}, {r['device']['type']}; run {r['run_id']}")


def instance_labels(config: RunConfig, instance: int) -> tuple[str, tuple[int, int]]:
    """``("labelled 'X', truly 'Y'", (label, true label))`` of one training instance of the run."""
    data = build_data(config)
    label, true = int(data.train.labels[instance]), int(data.train.true_labels[instance])
    names = class_names(config)
    return f"labelled '{names[label]}', truly '{names[true]}'", (label, true)


def save(fig, directory: str | Path, name: str) -> Path:
    """Write ``fig`` as ``<directory>/<name>.png``, atomically."""
    path = Path(directory) / f"{name}.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())
    return path


def noisy_mask(config: RunConfig) -> np.ndarray:
    """Which training instances of the run carry a wrong label (rebuilt from the run's config)."""
    data = build_data(config)
    return (data.train.labels != data.train.true_labels).numpy()


def figure3(config: RunConfig, epoch: int | None = None, ax=None):
    """Distribution of the target weight ``omega'_t`` on clean and on noisy instances in one epoch."""
    w = weights(config)
    e = len(w["epochs"]) - 1 if epoch is None else epoch
    noisy = noisy_mask(config)
    frame = pd.DataFrame({"target weight": w["target_weight"][e],
                          "instance": np.where(noisy, "noisy", "clean")})
    ax = ax or plt.gca()
    sns.histplot(frame, x="target weight", hue="instance", stat="density", common_norm=False, bins=50,
                 element="step", ax=ax)
    ax.set_title(f"target weight $\\omega'_t$ in epoch {int(w['epochs'][e]) + 1}")
    return ax, frame


def figure4(gdw: RunConfig, mwnet: RunConfig, instance: int, epoch: int, classes: Sequence[str],
            labels: tuple[int, int], axes=None):
    """One noisy instance's class-level weights before and after one iteration, GDW beside MW-Net."""
    axes = axes if axes is not None else plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)[1]
    label, true = labels
    names = [c + (" (label)" if k == label else " (true)" if k == true else "") for k, c in enumerate(classes)]
    for ax, config, title in zip(axes, (gdw, mwnet), ("GDW", "MW-Net")):
        w = weights(config)
        k = int(np.flatnonzero(w["tracked"] == instance)[0])
        before, after = w["tracked_rows"][epoch, k]
        x = np.arange(len(classes))
        ax.bar(x - 0.2, before, 0.4, label="before ($\\omega$)")
        ax.bar(x + 0.2, after, 0.4, label="after ($\\omega'$)")
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_title(f"{title}, epoch {epoch + 1}")
    axes[0].set_ylabel("class-level weight")
    axes[0].legend()
    return axes


def figure5(config: RunConfig, ax=None):
    """Per-epoch fraction of weights that increased within an iteration, in three categories."""
    w = weights(config)
    inc = w["increased"].astype(float)  # (E, 4, 2): increased, total
    frame = pd.DataFrame({
        "epoch": np.tile(w["epochs"] + 1, 3),
        "ratio": np.concatenate([inc[:, i, 0] / np.maximum(inc[:, i, 1], 1) for i in range(3)]),
        "weights": np.repeat(["non-target, clean ($w^c_{nt}$)", "true target, noisy ($w^n_{tt}$)",
                              "non-target, noisy ($w^n_{nt}$)"], len(w["epochs"])),
    })
    ax = ax or plt.gca()
    sns.lineplot(frame, x="epoch", y="ratio", hue="weights", marker="o", ax=ax)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ratio of increased weights")
    return ax, frame


def figure6(config: RunConfig, ax=None):
    """Per-epoch fraction of increased ``omega_{C-2}`` on instances of the smallest class ``C-1``."""
    w = weights(config)
    inc = w["increased"][:, CATEGORIES.index("penultimate_on_last")].astype(float)
    frame = pd.DataFrame({"epoch": w["epochs"] + 1, "ratio": inc[:, 0] / np.maximum(inc[:, 1], 1)})
    ax = ax or plt.gca()
    sns.lineplot(frame, x="epoch", y="ratio", marker="o", ax=ax)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ratio of increased $\\omega_{C-2}$")
    return ax, frame


def separation(clean: np.ndarray, noisy: np.ndarray) -> float:
    """The fraction of (clean, noisy) pairs in which the clean value is the larger (ties count
    half): 0.5 means no separation, 1 a perfect one."""
    noisy = np.sort(noisy)
    below = np.searchsorted(noisy, clean, side="left")
    ties = np.searchsorted(noisy, clean, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(clean) * len(noisy)))


def figure_findings(configs: dict[str, RunConfig]) -> pd.DataFrame:
    """The paper's description of each of Figures 3-6 beside what our recorded weights show.
    ``configs`` as :func:`gdwlib.experiments.figure_configs` gives them."""
    from .report import paper_results

    described = paper_results()["figures"]
    gdw, mwnet, lt = weights(configs["GDW"]), weights(configs["MWNet"]), weights(configs["GDW long tail"])
    noisy = noisy_mask(configs["GDW"])
    rows = []

    target = gdw["target_weight"][-1]
    s = separation(target[~noisy], target[noisy])
    rows.append(("figure3", f"in the last epoch a clean instance's target weight exceeds a noisy one's in {100 * s:.1f}% "
                 "of (clean, noisy) pairs", s > 0.75))

    middle = len(gdw["epochs"]) // 2
    data = build_data(configs["GDW"])
    labels, true = data.train.labels.numpy(), data.train.true_labels.numpy()
    gdw_ok = mw_ok = total = 0
    for k, i in enumerate(gdw["tracked"]):
        if labels[i] == true[i]:
            continue
        total += 1
        before, after = gdw["tracked_rows"][middle, k]
        others = np.ones(len(before), bool)
        others[[labels[i], true[i]]] = False
        gdw_ok += bool(after[true[i]] < before[true[i]] and (after[others] > before[others]).any())
        mb, ma = mwnet["tracked_rows"][middle, k]
        mw_ok += bool((ma < mb).all())
    rows.append(("figure4", f"in epoch {middle + 1}, GDW lowered the true class's weight and raised another "
                 f"non-target weight on {gdw_ok} of {total} tracked noisy instances; MW-Net lowered all weights "
                 f"on {mw_ok} of {total}", total > 0 and gdw_ok > total / 2 and mw_ok > total / 2))

    inc = gdw["increased"].astype(float)
    ratio = inc[:, :3, 0] / np.maximum(inc[:, :3, 1], 1)
    nt_c, tt_n, nt_n = ratio.mean(0)
    rows.append(("figure5", f"mean over epochs: non-target on clean {100 * nt_c:.0f}%, non-target on noisy "
                 f"{100 * nt_n:.0f}%, true target on noisy {100 * tt_n:.0f}% (range {100 * ratio[:, 1].min():.0f}-"
                 f"{100 * ratio[:, 1].max():.0f}%)",
                 bool(abs(nt_c - 0.65) < 0.1 and abs(nt_n - 0.65) < 0.1 and (ratio[:, 1] < 0.2).all())))

    inc6 = lt["increased"][:, CATEGORIES.index("penultimate_on_last")].astype(float)
    r6 = inc6[:, 0] / np.maximum(inc6[:, 1], 1)
    rows.append(("figure6", f"per epoch {100 * r6.min():.0f}-{100 * r6.max():.0f}% of omega_(C-2) increased on "
                 f"instances of class C-1 (mean {100 * r6.mean():.0f}%)", bool((r6 < 0.1).all())))
    return pd.DataFrame([{"figure": key, "the paper says": described[key], "our runs show": text,
                          "verdict": "held" if ok else "not held"} for key, text, ok in rows])
