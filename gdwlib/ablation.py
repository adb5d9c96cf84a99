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


def last_epochs_mean(history: Sequence[dict], k: int) -> float:
    """The mean test accuracy of the last ``k`` epochs of ``history`` (NaN when it has fewer)."""
    acc = [h["test_accuracy"] for h in history]
    return float(np.mean(acc[-k:])) if len(acc) >= k else np.nan


def reading_name(k: int) -> str:
    return "last epoch" if k == 1 else f"mean of last {k}"


def paper_share(epochs: int) -> float:
    """How many of our ``epochs`` the paper's final-accuracy window covers at the same share of
    training: its last ``final_epochs`` of the paper profile's CIFAR-10 epochs."""
    return RunConfig().final_epochs / PROFILES["paper"]["cifar10"]["epochs"] * epochs


def readings(runs: pd.DataFrame, ks: Sequence[int] = READINGS) -> pd.DataFrame:
    """Every finished run of ``runs`` (frames of :func:`gdwlib.report.collect`) with its accuracy
    under each reading: one row per run and reading, with the network it trained."""
    rows = []
    for run in runs[runs.status == "ok"].itertuples():
        model = run.result["config"]["model"]
        for k in ks:
            rows.append({"network": MODEL_NAMES.get(model, model), "column": run.column, "setting": run.label,
                         "method": run.method, "seed": run.seed, "reading": reading_name(k),
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
    cell = gap.apply(lambda r: f"{r['difference']:+.2f} ± {r['standard error']:.2f} ({r['verdict']})", axis=1)
    table = gap.assign(cell=cell).pivot(index=["network", "setting"], columns="reading", values="cell")
    return table.loc[list(dict.fromkeys(zip(gap["network"], gap["setting"]))), list(dict.fromkeys(gap["reading"]))]


def per_seed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Each seed's accuracy under each reading, GDW beside its ablation: (network, setting, seed)
    rows, (reading, method) columns."""
    table = frame.pivot_table(index=["network", "setting", "seed"], columns=["reading", "method"], values="accuracy",
                              sort=False)
    return table.round(2)


def _direction(row) -> str:
    if row["verdict"] == "not tested":
        return "not tested (one seed)"
    if abs(row["difference"]) <= 2 * row["standard error"]:
        return "within noise"
    return "better with the constraint" if row["difference"] > 0 else "better without the constraint"


def summary(gap: pd.DataFrame, book: str = reading_name(READINGS[-1])) -> str:
    """One sentence per network and setting, generated from :func:`gaps`: which way GDW moved
    without the constraint under the book's reading, and where another reading changes it."""
    lines = []
    for (network, setting), group in gap.groupby(["network", "setting"], sort=False):
        by = group.set_index("reading")
        main = by.loc[book]
        text = (f"- **{network}, {setting}**: GDW minus GDW without the constraint {main['difference']:+.2f} ± "
                f"{main['standard error']:.2f} points over {main['seeds']} seeds ({book}): {_direction(main)}")
        others = [f"{r}: {by.loc[r, 'difference']:+.2f} ± {by.loc[r, 'standard error']:.2f}, {_direction(by.loc[r])}"
                  for r in by.index if r != book and _direction(by.loc[r]) != _direction(main)]
        lines.append(text + (f"; under another reading it moves ({'; '.join(others)})." if others
                             else "; the same under every reading."))
    return "\n".join(lines)


def late_recovery(runs: pd.DataFrame, k: int = READINGS[-1]) -> dict | None:
    """The finished run of ``runs`` whose last epoch is furthest above the mean of its last ``k``
    (the run the averaging window hurts most), with its history; None without finished runs."""
    best = None
    for run in runs[runs.status == "ok"].itertuples():
        acc = [h["test_accuracy"] for h in run.result["history"]]
        rise = acc[-1] - last_epochs_mean(run.result["history"], k)
        if best is None or rise > best["rise"]:
            model = run.result["config"]["model"]
            best = {"network": MODEL_NAMES.get(model, model), "setting": run.label, "method": run.method,
                    "seed": run.seed, "rise": rise, "accuracy": acc, "window": last_epochs_mean(run.result["history"], k)}
    return best


def describe_recovery(run: dict, k: int = READINGS[-1]) -> str:
    """The late recovery of :func:`late_recovery`'s run, in words, from its history."""
    acc = run["accuracy"]
    low = int(np.argmin(acc))
    return (f"{run['method']} on the {run['network']}, {run['setting']}, seed {run['seed']}: {acc[low]:.1f}% in epoch "
            f"{low + 1} of {len(acc)}, {acc[-1]:.1f}% in the last. Averaged over its last {k} epochs, as the book's "
            f"final accuracy is, it scores {run['window']:.1f}%, {run['rise']:.1f} points below its last epoch: the "
            f"window still holds epochs {len(acc) - k + 1}-{len(acc) - 1} of the recovery "
            f"({', '.join(f'{a:.1f}' for a in acc[-k:-1])}%).")


def describe_window(epochs: int, k: int = READINGS[-1]) -> str:
    """How the book's final-accuracy window compares with the paper's, for runs of ``epochs``."""
    paper_epochs, share = PROFILES["paper"]["cifar10"]["epochs"], paper_share(epochs)
    return (f"The paper's final accuracy averages the last {RunConfig().final_epochs} of its {paper_epochs} epochs, the "
            f"last {100 * RunConfig().final_epochs / paper_epochs:.0f}% of training; ours averages the last {k} of "
            f"{epochs}, the last {100 * k / epochs:.0f}%. The paper's share of our {epochs} epochs is {share:.2f} "
            f"epoch{'s' if share > 1 else ''}: of the readings here, the "
            f"{reading_name(min(READINGS, key=lambda r: abs(r - share)))} is the nearest to the paper's.")
