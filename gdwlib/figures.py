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

from .book import FIGURE_DPI, FIGURE_FONT_PT, FIGURE_WIDTH_IN
from .config import RunConfig
from .data.build import build_data
from .data.fashion_mnist import CLASSES as FASHION_CLASSES
from .profiles import describe_override
from .report import DATASET_NAMES, MODEL_NAMES, verdict
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
        setting += f", long-tailed with μ = {c['imbalance']:g}"
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


# Figures for the book's page (gdwlib.book's measures): drawn at FIGURE_DPI and at most COLUMN_PX
# wide, they are shown at their own size, and text of FIGURE_FONT_PT points (about 12) is as
# large as the body text; the notebook applies STYLE to every plot.
WIDTH_IN = FIGURE_WIDTH_IN
STYLE = {"figure.dpi": FIGURE_DPI, **{key: max(12.0, FIGURE_FONT_PT) for key in (
    "font.size", "axes.labelsize", "xtick.labelsize", "ytick.labelsize", "legend.fontsize", "legend.title_fontsize")},
    "axes.titlesize": max(13.0, FIGURE_FONT_PT)}
# Figure 5's three groups: plain names (tables show them as text), each its own colour, marker and
# line style, since the two non-target lines nearly coincide (as in the paper).
GROUPS = {"non-target, clean": dict(color="#0072B2", marker="o", linestyle="-"),
          "true target, noisy": dict(color="#D55E00", marker="s", linestyle="-"),
          "non-target, noisy": dict(color="#009E73", marker="^", linestyle="--")}
# The sizes the paper's words state (Section 4.2): "around 65%" of both non-target groups and
# "less than 20%" of true targets increase (Figure 5); "less than 10%" of omega_8 on C9 (Figure 6).
PAPER_NONTARGET, PAPER_TRUE_TARGET, PAPER_PENULTIMATE = 0.65, 0.20, 0.10


def figure3(config: RunConfig, epoch: int | None = None, ax=None):
    """Distribution of the target weight ``omega'_t`` on clean and on noisy instances in one epoch."""
    w = weights(config)
    e = len(w["epochs"]) - 1 if epoch is None else epoch
    noisy = noisy_mask(config)
    frame = pd.DataFrame({"target weight": w["target_weight"][e],
                          "instance": np.where(noisy, "noisy", "clean")})
    ax = ax or plt.gca()
    sns.histplot(frame, x="target weight", hue="instance", hue_order=["clean", "noisy"], stat="density",
                 common_norm=False, bins=50, element="step", palette=["#0072B2", "#D55E00"], ax=ax)
    ax.set_title(f"target weight $\\omega'_t$ in epoch {int(w['epochs'][e]) + 1}")
    return ax, frame


def figure4(gdw: RunConfig, mwnet: RunConfig, instance: int, epoch: int, classes: Sequence[str],
            labels: tuple[int, int], axes=None):
    """One noisy instance's class-level weights before and after one iteration, GDW above MW-Net."""
    axes = axes if axes is not None else plt.subplots(2, 1, figsize=(WIDTH_IN, 6.5), sharex=True)[1]
    label, true = labels
    names = [c + (" (label)" if k == label else " (true)" if k == true else "") for k, c in enumerate(classes)]
    for ax, config, title in zip(axes, (gdw, mwnet), ("GDW", "MW-Net")):
        w = weights(config)
        k = int(np.flatnonzero(w["tracked"] == instance)[0])
        before, after = w["tracked_rows"][epoch, k]
        x = np.arange(len(classes))
        ax.bar(x - 0.2, before, 0.4, label="before ($\\omega$)", color="#0072B2")
        ax.bar(x + 0.2, after, 0.4, label="after ($\\omega'$)", color="#E69F00")
        ax.set_title(f"{title}, epoch {epoch + 1}")
        ax.set_ylabel("class-level weight")
        if np.isfinite(w["tracked_rows"][epoch, k]).any():   # a rehearsal's cut epoch may not reach it
            ax.set_ylim(0, 1.4 * np.nanmax(w["tracked_rows"][epoch, k]))   # room for the legend above the bars
    axes[-1].set_xticks(np.arange(len(classes)), names, rotation=45, ha="right")
    axes[0].legend(loc="upper center", ncol=2, framealpha=0.9)
    return axes


def increase_ratios(increased: np.ndarray) -> np.ndarray:
    """Per epoch and category, the share of weights that increased: ``increased`` is the (E, K, 2)
    array of (increased, total) counts of ``weights.npz``; NaN where a category had no weight."""
    counts = np.asarray(increased, dtype=float)
    with np.errstate(invalid="ignore"):   # 0 / 0 is the NaN of an empty category
        return counts[..., 0] / counts[..., 1]


def figure5(config: RunConfig, ax=None):
    """Per-epoch fraction of weights that increased within an iteration, in three categories."""
    w = weights(config)
    ratio = increase_ratios(w["increased"])
    frame = pd.DataFrame({name: ratio[:, CATEGORIES.index(key)] for name, key in
                          zip(GROUPS, ("nontarget_clean", "truetarget_noisy", "nontarget_noisy"))},
                         index=pd.Index(w["epochs"] + 1, name="epoch"))
    ax = ax or plt.gca()
    for name, style in GROUPS.items():
        ax.plot(frame.index, frame[name], label=name, **style)
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ratio of increased weights")
    ax.legend(loc="best", framealpha=0.9)
    return ax, frame


def figure6(config: RunConfig, ax=None):
    """Per-epoch fraction of increased ``omega_{C-2}`` on instances of the smallest class ``C-1``."""
    w = weights(config)
    ratio = increase_ratios(w["increased"])[:, CATEGORIES.index("penultimate_on_last")]
    frame = pd.DataFrame({"ratio": ratio}, index=pd.Index(w["epochs"] + 1, name="epoch"))
    ax = ax or plt.gca()
    ax.plot(frame.index, frame["ratio"], marker="o", color="#0072B2")
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ratio of increased $\\omega_{C-2}$")
    return ax, frame


def separation(clean: np.ndarray, noisy: np.ndarray) -> float:
    """The fraction of (clean, noisy) pairs in which the clean value is the larger (ties count
    half): 0.5 means no separation, 1 a perfect one."""
    noisy = np.sort(noisy)
    below = np.searchsorted(noisy, clean, side="left")
    ties = np.searchsorted(noisy, clean, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(clean) * len(noisy)))


def instance_moves(rows: np.ndarray, labels: np.ndarray, true_labels: np.ndarray) -> tuple[float, float]:
    """Figure 4's two patterns over every iteration of the tracked noisy instances.

    ``rows`` is ``tracked_rows`` of ``weights.npz``, (E, K, 2, C): each tracked instance's
    class-level weights before (omega) and after (omega') its iteration in each epoch; ``labels``
    and ``true_labels`` are the K instances' given and true classes. Returns the fraction of the
    noisy instances' iterations in which (1) the true class's weight fell and some other
    non-target weight rose (GDW's move in Figure 4) and (2) every weight fell (MW-Net's); NaN
    without any recorded iteration of a noisy instance (an epoch cut short leaves rows NaN)."""
    noisy = np.flatnonzero(labels != true_labels)
    seen = [(e, k) for k in noisy for e in range(rows.shape[0]) if not np.isnan(rows[e, k]).any()]
    if not seen:
        return np.nan, np.nan
    split = splits = 0
    for e, k in seen:
        before, after = rows[e, k]
        others = np.ones(len(before), bool)
        others[[labels[k], true_labels[k]]] = False
        split += bool(after[true_labels[k]] < before[true_labels[k]] and (after[others] > before[others]).any())
        splits += bool((after < before).all())
    return split / len(seen), splits / len(seen)


# The per-seed statistics, in the order of the figures, each a share in [0, 1]: Figure 3's
# separation, Figure 4's two patterns (:func:`instance_moves`), Figure 5's three groups and Figure
# 6's ratio, each of the last two averaged over the epochs.
STATISTICS = ("clean above noisy", "GDW splits", "MW-Net lowers all", *GROUPS, "C-2 up on C-1")


def seed_statistics(configs: dict[str, RunConfig]) -> dict[str, float]:
    """Each figure's statistic in one seed's runs (``configs`` as
    :func:`gdwlib.experiments.figure_configs` gives them); NaN where a run has no weights."""
    out = dict.fromkeys(STATISTICS, np.nan)
    have = {k: c for k, c in configs.items() if find_result(c) and (run_directory(c) / "weights.npz").exists()}
    if "GDW" in have:
        w, noisy = weights(have["GDW"]), noisy_mask(have["GDW"])
        target = w["target_weight"][-1]
        seen = ~np.isnan(target)
        if (seen & noisy).any() and (seen & ~noisy).any():
            out["clean above noisy"] = separation(target[seen & ~noisy], target[seen & noisy])
        ratio = np.nanmean(increase_ratios(w["increased"]), axis=0)
        for name, key in zip(GROUPS, ("nontarget_clean", "truetarget_noisy", "nontarget_noisy")):
            out[name] = ratio[CATEGORIES.index(key)]
        data = build_data(have["GDW"])
        labels, true = data.train.labels.numpy(), data.train.true_labels.numpy()
        for method, pattern in (("GDW", 0), ("MWNet", 1)):
            if method in have:
                tracked = weights(have[method])
                rows, index = tracked["tracked_rows"], tracked["tracked"]
                moves = instance_moves(rows, labels[index], true[index])
                out[("GDW splits", "MW-Net lowers all")[pattern]] = moves[pattern]
    if "GDW long tail" in have:
        w = weights(have["GDW long tail"])
        out["C-2 up on C-1"] = np.nanmean(increase_ratios(w["increased"])[:, CATEGORIES.index("penultimate_on_last")])
    return out



def figure_statistics(configs_by_seed: Sequence[dict[str, RunConfig]]) -> pd.DataFrame:
    """:func:`seed_statistics` of each seed's runs, one row per seed."""
    return pd.DataFrame([seed_statistics(c) for c in configs_by_seed], columns=list(STATISTICS),
                        index=pd.Index([c["GDW"].seed for c in configs_by_seed], name="seed"))


def judge(effects: Sequence[float], size: float | None = None) -> tuple[str, float, float, int]:
    """(verdict, mean, standard error, seeds) of a per-seed effect, signed so that positive is
    the direction the paper describes, by :data:`gdwlib.report.VERDICT_RULE`: beyond noise when
    the mean exceeds two standard errors of the seed-by-seed values, and the size reached when the
    mean is at least ``size`` (None: the paper states none). Seeds without a value are left out;
    with fewer than two there is no standard error, and the verdict is *not tested*."""
    values = np.asarray(effects, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return "not tested", (float(values[0]) if n else np.nan), np.nan, n
    mean, se = float(values.mean()), float(values.std(ddof=1) / np.sqrt(n))
    return verdict(mean > 2 * se, size is None or mean >= size), mean, se, n


def _pct(stats: pd.DataFrame, name: str) -> str:
    """Mean ± standard error over the seeds of a share, in percent (no ± with one seed)."""
    v = stats[name].dropna()
    se = f" ± {100 * v.std(ddof=1) / np.sqrt(len(v)):.1f}" if len(v) > 1 else ""
    return f"{100 * v.mean():.1f}{se}%"


def findings(stats: pd.DataFrame) -> pd.DataFrame:
    """Figures 3-6 judged by one rule from per-seed statistics (:func:`figure_statistics`'s
    frame): each figure's effect in the direction the paper describes, and the size its words
    state where they state one (:data:`PAPER_NONTARGET` ...)."""
    from .report import paper_results

    described = paper_results()["figures"]
    nt, tt = np.minimum(stats["non-target, clean"], stats["non-target, noisy"]), stats["true target, noisy"]
    claims = {
        "figure3": (stats["clean above noisy"] - 0.5, None,
                    f"in the last epoch a clean instance's target weight is above a noisy one's in "
                    f"{_pct(stats, 'clean above noisy')} of (clean, noisy) pairs (ties count half; 50%: no separation; "
                    "the paper states no number)"),
        "figure4": (np.minimum(stats["GDW splits"], stats["MW-Net lowers all"]) - 0.5, None,
                    f"over every iteration of the tracked noisy instances, GDW lowered the true class's weight and "
                    f"raised another non-target weight in {_pct(stats, 'GDW splits')}, MW-Net lowered all weights in "
                    f"{_pct(stats, 'MW-Net lowers all')}; the lower of the two minus 50% is {{effect}} points (read "
                    "as: more than half; the paper shows one instance and states no rate)"),
        "figure5": (nt - tt, PAPER_NONTARGET - PAPER_TRUE_TARGET,
                    "increased per epoch, averaged over the epochs: non-target on clean "
                    f"{_pct(stats, 'non-target, clean')}, "
                    f"non-target on noisy {_pct(stats, 'non-target, noisy')}, true target on noisy "
                    f"{_pct(stats, 'true target, noisy')}; the lower non-target share minus the true-target share is "
                    "{effect} points (the paper's words: about "
                    f"{100 * PAPER_NONTARGET:.0f} - under {100 * PAPER_TRUE_TARGET:.0f} = over "
                    f"{100 * (PAPER_NONTARGET - PAPER_TRUE_TARGET):.0f})"),
        "figure6": (0.5 - stats["C-2 up on C-1"], 0.5 - PAPER_PENULTIMATE,
                    f"omega_(C-2) increased on instances of class C-1 in {_pct(stats, 'C-2 up on C-1')} per epoch, "
                    f"averaged over the epochs (below 50%: it falls more often than it rises; the paper's: under "
                    f"{100 * PAPER_PENULTIMATE:.0f}%)"),
    }
    rows = []
    for key, (effect, size, text) in claims.items():
        v, mean, se, n = judge(effect, size)
        text = text.replace("{effect}", f"{100 * mean:+.1f}" + ("" if np.isnan(se) else f" ± {100 * se:.1f}"))
        if n < 2:
            text = ("one seed: no standard error; " + text) if n else ("no seed's runs recorded it (runs missing, "
                                                                          "or cut before they reached it)")
        rows.append({"figure": key, "the paper says": described[key], "our runs show": text, "verdict": v, "seeds": n})
    return pd.DataFrame(rows)


def seed_configs(profile: str, seeds: Sequence[int] | None = None, override: str | None = None,
                 **fields) -> list[dict[str, RunConfig]]:
    """:func:`gdwlib.experiments.figure_configs` for each seed the profile runs (``seeds``: these)."""
    from .experiments import SEEDS, figure_configs
    from .profiles import OVERRIDES

    seeds = seeds or OVERRIDES.get(override, {}).get("seeds") or SEEDS[profile]
    return [figure_configs(profile, seed=s, override=override, **fields) for s in seeds]


def figure_findings(configs: dict[str, RunConfig] | Sequence[dict[str, RunConfig]]) -> pd.DataFrame:
    """The paper's description of each of Figures 3-6 beside what our recorded weights show, with
    a verdict by :data:`gdwlib.report.VERDICT_RULE` over the seeds: ``configs`` is one dict per
    seed as :func:`seed_configs` gives them (a single seed's dict is one seed: *not tested*)."""
    return findings(figure_statistics([configs] if isinstance(configs, dict) else list(configs)))
