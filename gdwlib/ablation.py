"""Section 4.1's ablation (GDW without the zero-mean constraint of Eq. 4-6) read under several
final-accuracy rules.

A run's final accuracy is the mean test accuracy of its last ``final_epochs`` epochs (5). The
paper averages the last 5 of 80 epochs, the end of a converged run; the cpu profile averages the
last 5 of 12, and a run that collapses and recovers late is still climbing inside that window.
Here each run's accuracy is re-read from its per-epoch history (``history`` in its result file)
over the last 1, 3 and 5 epochs, and GDW is compared with its ablation, seed by seed, under each
reading by :data:`gdwlib.report.VERDICT_RULE`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .config import RunConfig
from .experiments import ABLATED
from .profiles import PROFILES
from .report import MODEL_NAMES, difference, verdict

READINGS = (1, 3, 5)   # the last k epochs averaged; 5 is the book's final accuracy
# Short names for the tables (the page names each network in full once).
NETWORKS = {"mlp_bn": "MLP with BatchNorm", "small_cnn_strided": "strided CNN, no BatchNorm"}


def network(model: str) -> str:
    """The short name of a network for the tables."""
    return NETWORKS.get(model, MODEL_NAMES.get(model, model))


def network_names(runs: pd.DataFrame) -> str:
    """Each short name of the finished runs' networks with its full name."""
    models = dict.fromkeys(r["config"]["model"] for r in runs["result"] if r)
    return "; ".join(f"*{network(m)}*: {MODEL_NAMES.get(m, m)}" for m in models)


def last_epochs_mean(history: Sequence[dict], k: int) -> float:
    """The mean test accuracy of the last ``k`` epochs of ``history`` (all of them where it has
    fewer, as a run's final accuracy is computed; NaN for no epoch)."""
    acc = [h["test_accuracy"] for h in history]
    return float(np.mean(acc[-k:])) if acc else np.nan


def _fmt(diff: float, se: float) -> str:
    return f"{diff:+.2f}" + ("" if np.isnan(se) else f" ± {se:.2f}")


def reading_name(k: int) -> str:
    return "last epoch" if k == 1 else f"mean of last {k}"


def paper_share(epochs: int) -> float:
    """How many of our ``epochs`` the paper's final-accuracy window covers at the same share of
    training: its last ``final_epochs`` of the paper profile's CIFAR-10 epochs."""
    return RunConfig().final_epochs / PROFILES["paper"]["cifar10"]["epochs"] * epochs


def readings(runs: pd.DataFrame, ks: Sequence[int] = READINGS) -> pd.DataFrame:
    """Every finished run of ``runs`` (frames of :func:`gdwlib.report.collect`) with its accuracy
    under each reading: one row per run and reading, with the network it trained. A window longer
    than the run is the whole run, read once."""
    rows = []
    for run in runs[runs.status == "ok"].itertuples():
        for k in dict.fromkeys(min(k, len(run.result["history"])) for k in ks):
            rows.append({"network": network(run.result["config"]["model"]), "column": run.column,
                         "setting": run.label, "method": run.method, "seed": run.seed, "reading": reading_name(k),
                         "accuracy": last_epochs_mean(run.result["history"], k)})
    return pd.DataFrame(rows, columns=["network", "column", "setting", "method", "seed", "reading", "accuracy"])


def gaps(frame: pd.DataFrame, method: str = "GDW", ablated: str = ABLATED) -> pd.DataFrame:
    """``method`` minus ``ablated`` per network, setting and reading over paired seeds (``frame``
    as :func:`readings` gives it): the mean, its standard error, the seeds, and the verdict on
    "the constraint helps" (*not tested* with fewer than two seeds)."""
    rows = []
    for (network, column, setting, reading), group in frame.groupby(["network", "column", "setting", "reading"],
                                                                    sort=False):
        d = difference(group.rename(columns={"accuracy": "final_accuracy"}), method, ablated, column)
        call = "not tested" if d["n"] < 2 else verdict(bool(d["diff"] > 2 * d["se"]))
        rows.append({"network": network, "setting": setting, "reading": reading, "difference": d["diff"],
                     "standard error": d["se"], "seeds": d["n"], "verdict": call})
    return pd.DataFrame(rows, columns=["network", "setting", "reading", "difference", "standard error", "seeds",
                                       "verdict"])


def gap_table(gap: pd.DataFrame) -> pd.DataFrame:
    """:func:`gaps` as (network, setting) rows and one column per reading: ``diff ± se (verdict)``."""
    cell = gap.apply(lambda r: f"{_fmt(r['difference'], r['standard error'])} ({r['verdict']})", axis=1)
    table = gap.assign(cell=cell).pivot(index=["network", "setting"], columns="reading", values="cell")
    return table.loc[list(dict.fromkeys(zip(gap["network"], gap["setting"]))), list(dict.fromkeys(gap["reading"]))]


def per_seed_table(frame: pd.DataFrame, method: str = "GDW", ablated: str = ABLATED) -> pd.DataFrame:
    """Each seed's accuracy under each reading, GDW beside its ablation: (network, noise, seed) rows,
    (reading, "with" / "without" the constraint) columns, narrow enough for the page."""
    short = frame.assign(noise=frame["setting"].str.split(", ").str[-1],
                         method=frame["method"].map({method: "with", ablated: "without"}))
    table = short.pivot_table(index=["network", "noise", "seed"], columns=["reading", "method"], values="accuracy",
                              sort=False)
    table.columns.names = ["reading", "constraint"]
    return table.round(2)


def _direction(row) -> str:
    if row["verdict"] == "not tested":
        return "not tested (one seed)"
    if abs(row["difference"]) <= 2 * row["standard error"]:
        return "within noise"
    return "better with the constraint" if row["difference"] > 0 else "better without the constraint"


def summary(gap: pd.DataFrame) -> str:
    """One line per network and setting, generated from :func:`gaps`: which way GDW moved without
    the constraint under the book's reading (the widest window, listed last), the gap under the
    other readings, and whether any of them calls it otherwise."""
    lines = []
    for (network, setting), group in gap.groupby(["network", "setting"], sort=False):
        by = group.set_index("reading")
        book, others = by.index[-1], list(by.index[:-1])
        main = by.loc[book]
        changed = [f"{r}: {_direction(by.loc[r])}" for r in others if _direction(by.loc[r]) != _direction(main)]
        lines.append(f"- **{network}, {setting}**: GDW minus GDW without the constraint "
                     f"{_fmt(main['difference'], main['standard error'])} points over {main['seeds']} seed(s) "
                     f"({book}): {_direction(main)}"
                     + "".join(f"; {r}: {_fmt(by.loc[r, 'difference'], by.loc[r, 'standard error'])}" for r in others)
                     + (f". Another reading calls it otherwise ({'; '.join(changed)})." if changed
                        else ". The same call under every reading."))
    return "\n".join(lines)


def late_recovery(runs: pd.DataFrame, k: int = READINGS[-1]) -> dict | None:
    """The finished run of ``runs`` whose last epoch is furthest above the mean of its last ``k``
    (the run the averaging window hurts most), with its history; None without finished runs."""
    best = None
    for run in runs[runs.status == "ok"].itertuples():
        acc = [h["test_accuracy"] for h in run.result["history"]]
        rise = acc[-1] - last_epochs_mean(run.result["history"], k)
        if best is None or rise > best["rise"]:
            best = {"network": network(run.result["config"]["model"]), "setting": run.label, "method": run.method,
                    "seed": run.seed, "rise": rise, "accuracy": acc,
                    "window": last_epochs_mean(run.result["history"], k)}
    return best


def describe_recovery(run: dict, k: int = READINGS[-1]) -> str:
    """The late recovery of :func:`late_recovery`'s run, in words, from its history."""
    acc = run["accuracy"]
    low, k = int(np.argmin(acc)), min(k, len(acc))
    return (f"{run['method']} on the {run['network']}, {run['setting']}, seed {run['seed']}: {acc[low]:.1f}% in epoch "
            f"{low + 1} of {len(acc)}, {acc[-1]:.1f}% in the last. Averaged over its last {k} epoch(s), as the book's "
            f"final accuracy is, it scores {run['window']:.1f}%, {run['rise']:.1f} points below its last epoch: the "
            f"window, epochs {len(acc) - k + 1}-{len(acc)}, holds {', '.join(f'{a:.1f}' for a in acc[-k:])}%.")


def describe_window(epochs: int, k: int = READINGS[-1]) -> str:
    """How the book's final-accuracy window compares with the paper's, for runs of ``epochs``."""
    paper_epochs, share, k = PROFILES["paper"]["cifar10"]["epochs"], paper_share(epochs), min(k, epochs)
    return (f"The paper's final accuracy averages the last {RunConfig().final_epochs} of its {paper_epochs} epochs, "
            "the "
            f"last {100 * RunConfig().final_epochs / paper_epochs:.0f}% of training; ours averages the last {k} of "
            f"{epochs}, the last {100 * k / epochs:.0f}%. The paper's share of our {epochs} epochs is {share:.2f} "
            f"epoch{'s' if share > 1 else ''}: of the readings here, the "
            f"{reading_name(min(READINGS, key=lambda r: abs(r - share)))} is the nearest to the paper's.")
