"""The paper's claims (its Section 4 and the cost claim), each judged on our runs by one rule.

A claim is a small function of the runs of one data set and network: it says what our runs show
in words computed from the numbers, and gives a verdict by :data:`gdwlib.report.VERDICT_RULE`.
Where the paper states a size, the size is read from the paper's own tables
(``paper_results.json``) for the CIFAR column ours is compared with. A claim whose runs were
not made is *not tested*, never partly held.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .experiments import ABLATED, DATASET_NAMES, NOISY
from .report import (MODEL_NAMES, PAPER_THRESHOLDS, VERDICT_RULE, compare, paper_gap, paper_results, paper_second_best_gain,
                     per_seed, relative_gain, summarize, verdict)
from .significance import two_se_error_rate

# The short names a reader sees in the summary's matrix, in the paper's order.
CLAIM_NAMES = {
    "no_extra_cost": "no extra cost over MW-Net",
    "gdw_best_noise": "GDW best under label noise",
    "glc_best_flip40": "GLC best at 40% flip noise",
    "glc_beats_mwnet_flip40": "GLC far above MW-Net at 40% flip",
    "consistent_gain_over_mwnet": "GDW above MW-Net in every noise setting",
    "gap_grows_with_noise": "GDW's lead over MW-Net grows with noise",
    "uniform60_gain": "GDW's margin at 60% uniform noise",
    "beats_label_methods": "GDW above Soft-label and Gen-label",
    "zero_mean_needed": "the zero-mean constraint is needed",
    "gdw_best_long_tail": "GDW best on long-tailed sets",
    "longtail_0.01": "GDW 8.6 points above MW-Net at μ = 0.01",
    "insw_competitive": "INSW competitive on long-tailed sets",
    "finetuning_hurts_long_tail": "fine-tuning hurts on long-tailed sets",
    "clothing1m_best": "GDW best on Clothing1M",
    "l2rw_clothing1m": "L2RW above INSW and MW-Net on Clothing1M",
}
NOT_TESTED = "not tested"
TABLE_KEYS = {"uniform": "table2_uniform_noise", "flip": "table3_flip_noise", "long tail": "table4_long_tail"}


class Runs:
    """The finished runs one set of claims is judged on: the tables' frames (``gdwlib.report.collect``)
    restricted to one data set, and the paper's column for each of ours."""

    def __init__(self, frames: dict[str, pd.DataFrame], dataset: str):
        self.dataset = dataset
        self.frames = {k: f[f["column"].str.startswith(dataset + "/") | (f["column"] == dataset)]
                       for k, f in frames.items() if f is not None and len(f)}
        both = pd.concat([f for f in self.frames.values()] or [pd.DataFrame(columns=["column", "paper_column"])])
        self.paper_of = dict(zip(both["column"], both["paper_column"]))

    def get(self, table: str) -> pd.DataFrame:
        return self.frames.get(table, pd.DataFrame(columns=["method", "column", "status", "seed", "final_accuracy",
                                                            "label"]))

    def column(self, level: str) -> str:
        return f"{self.dataset}/{level}"

    def ran(self, table: str, column: str, methods) -> bool:
        """Whether every one of ``methods`` has at least two finished seeds in ``column``."""
        f = self.get(table)
        ok = f[(f["column"] == column) & (f["status"] == "ok")]
        counts = ok.groupby("method")["seed"].nunique()
        return all(counts.get(m, 0) >= 2 for m in methods)

    def label(self, table: str, column: str) -> str:
        f = self.get(table)
        return f.loc[f["column"] == column, "label"].iloc[0]


def setting(table: str, column: str) -> str:
    """A column of a table in words: "40% uniform", "20% flip", "μ = 0.1"."""
    level = column.split("/")[-1]
    if table == "long tail":
        return f"μ = {level}"
    return f"{float(level):.0%} {table}" if table in ("uniform", "flip") else f"{column} ({table})"


def _pm(d: dict) -> str:
    return f"{d['diff']:+.2f} ± {d['se']:.2f}"


def _methods_in(frame: pd.DataFrame, column: str) -> list[str]:
    return list(dict.fromkeys(frame.loc[(frame["column"] == column) & (frame["status"] == "ok"), "method"]))


def best_among(frame: pd.DataFrame, method: str, column: str, allowed_above: int = 0,
               noun: str = "methods") -> tuple[str, bool]:
    """Whether ``method`` is beyond noise below none of the other methods of ``column`` and beyond
    noise above all of them but ``allowed_above`` ("nearly all"), with the count in words."""
    others = [m for m in _methods_in(frame, column) if m != method]
    calls = {m: compare(frame, method, m, column) for m in others}
    above = [m for m, d in calls.items() if d["above"]]
    below = [m for m, d in calls.items() if d["below"]]
    text = f"above {len(above)} of {len(others)} other {noun}" + (f", below {', '.join(below)}" if below else "")
    return text, not below and len(above) >= len(others) - allowed_above


def claim_cost(runs: Runs, cost: dict | None) -> tuple[str, str]:
    if cost is None:
        return "no measurement of the time per iteration", NOT_TESTED
    m, ratios = cost["machine"], cost.get("round_ratios", [])
    spread = (f" (median of {len(ratios)} rounds, each round's ratio between {min(ratios):.2f} and {max(ratios):.2f})"
              if len(ratios) > 1 else "")
    return (f"time per iteration, GDW / MW-Net = {cost['gdw_over_mwnet']:.2f}{spread}: ResNet-32, batch 100, "
            f"CIFAR-shaped, the two interleaved in one process by benchmarks/bench_methods.py ({m['type']}: "
            f"{m.get('name', '')}, {m.get('threads', '?')} threads); one measurement for every network",
            "held" if cost["gdw_over_mwnet"] <= 1.05 else "not held")


def claim_gdw_best_noise(runs: Runs, cost=None) -> tuple[str, str]:
    settings = [("uniform", runs.column(level)) for level in ("0.4", "0.6")] + [("flip", runs.column("0.2"))]
    settings = [(t, c) for t, c in settings if runs.ran(t, c, NOISY)]
    if not settings:
        return "needs all ten methods in the noisy settings other than 40% flip", NOT_TESTED
    parts, ok = [], True
    for table, column in settings:
        text, best = best_among(runs.get(table), "GDW", column, allowed_above=1)
        parts.append(f"{setting(table, column)}: GDW {text}")
        ok &= best
    return ("; ".join(parts) + " (read as: below none and beyond noise above all but at most one, in every "
            "setting)", verdict(ok))


def claim_glc_best_flip40(runs: Runs, cost=None) -> tuple[str, str]:
    column = runs.column("0.4")
    if not runs.ran("flip", column, NOISY):
        return "needs all ten methods at 40% flip noise", NOT_TESTED
    text, best = best_among(runs.get("flip"), "GLC", column)
    means = summarize(runs.get("flip")).xs(column, level="column")["mean"]
    return f"GLC {text} (best mean: {means.idxmax()}, {means.max():.2f})", verdict(best)


def gap_claim(runs: Runs, table: str, level: str, a: str, b: str) -> tuple[str, str]:
    """``a`` beyond noise above ``b`` in one column, by at least the paper's gap there."""
    column = runs.column(level)
    where = setting(table, column)
    if not runs.ran(table, column, [a, b]):
        return f"no {a} and {b} runs at {where}", NOT_TESTED
    d = compare(runs.get(table), a, b, column)
    size = paper_gap(TABLE_KEYS[table], runs.paper_of[column], a, b)
    return (f"{a} minus {b} at {where}: {_pm(d)} points (the paper's: {size:+.2f})",
            verdict(d["above"], d["diff"] >= size))


def claim_glc_beats_mwnet_flip40(runs: Runs, cost=None) -> tuple[str, str]:
    return gap_claim(runs, "flip", "0.4", "GLC", "MWNet")


def claim_consistent_gain(runs: Runs, cost=None) -> tuple[str, str]:
    settings = [("uniform", runs.column(level)) for level in ("0.4", "0.6")]
    settings += [("flip", runs.column(level)) for level in ("0.2", "0.4")]
    missing = [setting(t, c) for t, c in settings if not runs.ran(t, c, ["GDW", "MWNet"])]
    if missing:
        return f"needs GDW and MW-Net in every noisy setting; not run: {', '.join(missing)}", NOT_TESTED
    calls = [(setting(t, c), compare(runs.get(t), "GDW", "MWNet", c)) for t, c in settings]
    text = "; ".join(f"{name}: {_pm(d)}" for name, d in calls)
    return f"GDW minus MW-Net, {text}", verdict(all(d["above"] for _, d in calls))


def claim_gap_grows(runs: Runs, cost=None) -> tuple[str, str]:
    c40, c60 = runs.column("0.4"), runs.column("0.6")
    uniform = runs.get("uniform")
    if not (runs.ran("uniform", c40, ["GDW", "MWNet"]) and runs.ran("uniform", c60, ["GDW", "MWNet"])):
        return "no 40%/60% uniform-noise runs of GDW and MW-Net", NOT_TESTED
    d40, d60 = compare(uniform, "GDW", "MWNet", c40), compare(uniform, "GDW", "MWNet", c60)

    def gap(column):
        return per_seed(uniform, "GDW", column) - per_seed(uniform, "MWNet", column)
    growth = (gap(c60) - gap(c40)).dropna()
    g, gse = growth.mean(), growth.std(ddof=1) / np.sqrt(len(growth)) if len(growth) > 1 else np.nan
    size = (paper_gap("table2_uniform_noise", runs.paper_of[c60], "GDW", "MWNet")
            - paper_gap("table2_uniform_noise", runs.paper_of[c40], "GDW", "MWNet"))
    return (f"GDW minus MW-Net: {_pm(d40)} at 40%, {_pm(d60)} at 60%; growth {g:+.2f} ± {gse:.2f} points "
            f"(the paper's: {size:+.2f})", verdict(d60["above"] and bool(g > 2 * gse), g >= size))


def claim_uniform60_gain(runs: Runs, cost=None) -> tuple[str, str]:
    c60 = runs.column("0.6")
    uniform = runs.get("uniform")
    if not runs.ran("uniform", c60, NOISY):
        missing = [m for m in NOISY if not runs.ran("uniform", c60, [m])]
        return (f"the second-best method needs all ten methods at 60% uniform noise; {', '.join(missing)} did not "
                "run on this network", NOT_TESTED)
    means = summarize(uniform).xs(c60, level="column")["mean"]
    second = means.drop("GDW").idxmax()
    d = compare(uniform, "GDW", second, c60)
    gain = relative_gain(means["GDW"], means[second])
    threshold = PAPER_THRESHOLDS[runs.paper_of[c60].split("/")[0]]
    p_second, p_points, p_gain = paper_second_best_gain(runs.paper_of[c60])
    return (f"at 60% uniform noise, GDW minus the best other method ({second}) = {_pm(d)} points, a relative gain "
            f"of {gain:+.2f}% (the claim read as a relative gain of more than {threshold:g}%, the reading under which "
            f"the paper's own Table 2 holds it: {p_points:.2f} points over {p_second}, {p_gain:.2f}%)",
            verdict(d["above"], gain > threshold))


def claim_beats_label_methods(runs: Runs, cost=None) -> tuple[str, str]:
    settings = [(t, c) for t in ("uniform", "flip") for c in dict.fromkeys(runs.get(t)["column"])
                if runs.ran(t, c, ["GDW", "Soft-label", "Gen-label"])]
    if not settings:
        return "no Soft-label and Gen-label runs", NOT_TESTED
    short = []
    for table, column in settings:
        calls = {m: compare(runs.get(table), "GDW", m, column) for m in ("Soft-label", "Gen-label")}
        short += [f"{m} at {setting(table, column)} ({_pm(d)})" for m, d in calls.items() if not d["above"]]
    text = f"GDW minus each, in {len(settings)} settings of Tables 2 and 3: "
    return (text + ("beyond noise above both in every one" if not short else "not beyond noise above "
                    + "; ".join(short)), verdict(not short))


def claim_zero_mean(runs: Runs, cost=None) -> tuple[str, str]:
    ablation = runs.get("ablation")
    columns = [c for c in (runs.column("0.4"), runs.column("0.6")) if runs.ran("ablation", c, ["GDW", ABLATED])]
    if not columns:
        return "no ablation runs", NOT_TESTED
    calls = [(c, compare(ablation, "GDW", ABLATED, c)) for c in columns]
    text = "GDW minus GDW without it, " + "; ".join(f"{setting('uniform', c)}: {_pm(d)}" for c, d in calls)
    return text + " (the paper states no size)", verdict(all(d["above"] for _, d in calls))


def claim_gdw_best_long_tail(runs: Runs, cost=None) -> tuple[str, str]:
    from .experiments import LONG_TAIL

    long_tail = runs.get("long tail")
    columns = [c for c in dict.fromkeys(long_tail["column"]) if runs.ran("long tail", c, LONG_TAIL)]
    if not columns:
        return "needs all eight methods of Table 4", NOT_TESTED
    parts, ok = [], True
    for column in columns:
        text, best = best_among(long_tail, "GDW", column, allowed_above=1)
        parts.append(f"{setting('long tail', column)}: GDW {text}")
        ok &= best
    return "; ".join(parts) + " (read as for label noise)", verdict(ok)


def claim_longtail_001(runs: Runs, cost=None) -> tuple[str, str]:
    return gap_claim(runs, "long tail", "0.01", "GDW", "MWNet")


def claim_insw_competitive(runs: Runs, cost=None) -> tuple[str, str]:
    from .experiments import LONG_TAIL

    long_tail = runs.get("long tail")
    columns = [runs.column(level) for level in ("0.1", "0.01") if runs.ran("long tail", runs.column(level), LONG_TAIL)]
    if not columns:
        return "needs all eight methods of Table 4 on the imbalanced sets", NOT_TESTED
    parts, ok = [], True
    for column in columns:
        text, best = best_among(long_tail[long_tail["method"] != "GDW"], "INSW", column, allowed_above=len(LONG_TAIL),
                                noun="baselines")
        parts.append(f"{setting('long tail', column)}: INSW {text}")
        ok &= best
    return "; ".join(parts) + " (read as: below none of the other baselines, GDW aside)", verdict(ok)


def claim_finetuning_hurts(runs: Runs, cost=None) -> tuple[str, str]:
    columns = [runs.column(level) for level in ("0.1", "0.01")]
    if not all(runs.ran("long tail", c, ["BaseModel", "Fine-tuning"]) for c in columns):
        return "no BaseModel and Fine-tuning runs on the imbalanced sets", NOT_TESTED
    calls = [(c, compare(runs.get("long tail"), "BaseModel", "Fine-tuning", c),
              paper_gap("table4_long_tail", runs.paper_of[c], "BaseModel", "Fine-tuning")) for c in columns]
    text = "; ".join(f"{setting('long tail', c)}: {_pm(d)} (the paper's: {size:+.2f})" for c, d, size in calls)
    return (f"BaseModel minus Fine-tuning, {text}",
            verdict(all(d["above"] for _, d, _ in calls), all(d["diff"] >= size for _, d, size in calls)))


def _clothing1m(runs: Runs) -> tuple[pd.Series | None, str]:
    frame = runs.get("clothing1m")
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    if not len(ok):
        return None, ("Table 5's runs are not part of this report (Clothing1M and the ImageNet weights are not on the "
                      "machines that build this book)")
    if ok.groupby("method")["seed"].nunique().min() < 2:
        return None, "one run per method, as the paper's: no standard error to call a difference by"
    return ok, ""


def claim_clothing1m_best(runs: Runs, cost=None) -> tuple[str, str]:
    ok, why = _clothing1m(runs)
    if ok is None:
        return why, NOT_TESTED
    text, best = best_among(runs.get("clothing1m"), "GDW", "clothing1m")
    d = compare(runs.get("clothing1m"), "GDW", "MWNet", "clothing1m")
    size = paper_gap("table5_clothing1m", "clothing1m", "GDW", "MWNet")
    return (f"GDW {text}; GDW minus MW-Net {_pm(d)} (the paper's: {size:+.2f})",
            verdict(best and d["above"], d["diff"] >= size))


def claim_l2rw_clothing1m(runs: Runs, cost=None) -> tuple[str, str]:
    ok, why = _clothing1m(runs)
    if ok is None:
        return why, NOT_TESTED
    calls = {m: compare(runs.get("clothing1m"), "L2RW", m, "clothing1m") for m in ("INSW", "MWNet")}
    return "L2RW minus " + "; ".join(f"{m}: {_pm(d)}" for m, d in calls.items()), verdict(
        all(d["above"] for d in calls.values()))


CLAIMS: dict[str, Callable] = {
    "no_extra_cost": claim_cost, "gdw_best_noise": claim_gdw_best_noise, "glc_best_flip40": claim_glc_best_flip40,
    "glc_beats_mwnet_flip40": claim_glc_beats_mwnet_flip40, "consistent_gain_over_mwnet": claim_consistent_gain,
    "gap_grows_with_noise": claim_gap_grows, "uniform60_gain": claim_uniform60_gain,
    "beats_label_methods": claim_beats_label_methods, "zero_mean_needed": claim_zero_mean,
    "gdw_best_long_tail": claim_gdw_best_long_tail, "longtail_0.01": claim_longtail_001,
    "insw_competitive": claim_insw_competitive, "finetuning_hurts_long_tail": claim_finetuning_hurts,
    "clothing1m_best": claim_clothing1m_best, "l2rw_clothing1m": claim_l2rw_clothing1m,
}


def evaluate_claims(frames: dict[str, pd.DataFrame], cost: dict | None = None, dataset: str | None = None) -> pd.DataFrame:
    """Every claim of the paper beside what the runs of ``frames`` show on ``dataset`` (default: the
    first data set of the uniform-noise runs), judged by :data:`gdwlib.report.VERDICT_RULE`.

    ``frames`` maps "uniform", "flip", "long tail", "ablation" and "clothing1m" to
    :func:`gdwlib.report.collect`'s frames (any may be missing); ``cost`` is
    :func:`gdwlib.report.iteration_cost`'s measurement."""
    if dataset is None:
        dataset = next(iter(dict.fromkeys(frames["uniform"]["column"]))).split("/")[0]
    runs = Runs(frames, dataset)
    texts = paper_results()["claims"]
    rows = []
    for key, check in CLAIMS.items():
        shown, v = check(runs, cost)
        rows.append({"claim": key, "the paper says": texts[key], "our runs show": shown, "verdict": v})
    return pd.DataFrame(rows)


def network_name(runs: pd.DataFrame) -> str:
    """The network the finished runs of ``runs`` trained ("MLP ... with BatchNorm", ...)."""
    models = sorted({r["config"]["model"] for r in runs["result"] if r})
    return ", ".join(MODEL_NAMES.get(m, m) for m in models) or "no finished runs"


def second_network_frames(second: pd.DataFrame, flip: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The second network's runs (:func:`gdwlib.experiments.second_network_cells` and
    :func:`~gdwlib.experiments.second_network_flip_cells`, collected) as :func:`evaluate_claims` takes them."""
    return {"uniform": second[second.method != ABLATED], "ablation": second[second.method != "BaseModel"], "flip": flip}


def claims_by_network(frames: dict[str, pd.DataFrame], second: dict[str, pd.DataFrame] | None = None,
                      cost: dict | None = None) -> pd.DataFrame:
    """:func:`evaluate_claims` for each data set of the profile's network and, where the profile has a
    second network, on that one too (``second``: :func:`second_network_frames`); one row per claim and
    setting ("network" names the network, and the data set where there are several)."""
    datasets = list(dict.fromkeys(c.split("/")[0] for c in frames["uniform"]["column"]))
    name = network_name(frames["uniform"])
    out = [evaluate_claims(frames, cost, d).assign(network=name + (f", {DATASET_NAMES.get(d, d)}" if len(datasets) > 1
                                                                    else "")) for d in datasets]
    if second is not None and len(second["uniform"]):
        out.append(evaluate_claims(second, cost).assign(network=network_name(second["uniform"])))
    frame = pd.concat(out, ignore_index=True)
    order = {k: i for i, k in enumerate(CLAIMS)}
    frame = frame.sort_values(by="claim", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    return frame[["claim", "network", "verdict", "our runs show", "the paper says"]]


def verdict_rule(seed_counts) -> str:
    """:data:`gdwlib.report.VERDICT_RULE` followed by the false-positive rate of its two-standard-error
    test for the numbers of paired seeds the claims rest on."""
    rates = " and ".join(f"{100 * two_se_error_rate(n):.0f}% of the time with {n} seeds"
                         for n in sorted(set(seed_counts)) if n > 1)
    return (VERDICT_RULE + (f" The two-standard-error test is coarse: two methods that are in truth equally good are "
                            f"still called different {rates} (a paired t-test at t = 2), and the claims are many, so "
                            "a single verdict near the threshold is weak evidence." if rates else ""))


VERDICT_COLOURS = {"held": "#c8e6c9", "direction only": "#fff3b0", "not held": "#f8c4c4", NOT_TESTED: "#e8e8e8"}
VERDICT_ORDER = ("held", "direction only", "not held", NOT_TESTED)


def verdict_matrix(claims: pd.DataFrame):
    """:func:`claims_by_network`'s verdicts as a claims-by-networks table, each cell coloured by its
    verdict (a pandas Styler)."""
    table = claims.pivot(index="claim", columns="network", values="verdict")
    table = table.loc[[k for k in CLAIMS if k in table.index], list(dict.fromkeys(claims["network"]))]
    table.index = [CLAIM_NAMES[k] for k in table.index]
    table.index.name, table.columns.name = "the paper's claim", None
    return table.style.map(lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}; color: #111")


def in_plain_words(claims: pd.DataFrame) -> str:
    """Per network, which claims reproduce, which only in direction, which do not, and which were not
    tested, as Markdown (one paragraph per network)."""
    paragraphs = []
    for network, group in claims.groupby("network", sort=False):
        by = {v: [CLAIM_NAMES[k] for k in group.loc[group["verdict"] == v, "claim"]] for v in VERDICT_ORDER}
        tested = len(group) - len(by[NOT_TESTED])
        words = {"held": "Reproduced", "direction only": "Reproduced in direction only, smaller than the paper's",
                 "not held": "Not reproduced", NOT_TESTED: "Not tested here"}
        parts = [f"{words[v]} ({len(names)}): {'; '.join(names)}." for v, names in by.items() if names]
        paragraphs.append(f"**{network}**: {tested} of the paper's {len(group)} claims could be tested. " + " ".join(parts))
    return "\n\n".join(paragraphs)


def claim_cells(profile: str, **fields) -> dict[str, list]:
    """Every run the claims are judged on, by group: Tables 2-4, the ablation, and the second network's
    runs (``fields`` as :func:`gdwlib.experiments.table_cells` takes them)."""
    from .experiments import ablation_cells, second_network_cells, second_network_flip_cells, table_cells

    return {"uniform": table_cells("table2", profile, **fields), "flip": table_cells("table3", profile, **fields),
            "long tail": table_cells("table4", profile, **fields), "ablation": ablation_cells(profile, **fields),
            "second network": second_network_cells(profile, **fields),
            "second network, flip": second_network_flip_cells(profile, **fields)}


def judge(runs: dict[str, pd.DataFrame], cost: dict | None = None) -> pd.DataFrame:
    """:func:`claims_by_network` on :func:`claim_cells`'s groups, collected."""
    second = (second_network_frames(runs["second network"], runs["second network, flip"])
              if len(runs["second network"]) else None)
    return claims_by_network({k: runs[k] for k in ("uniform", "flip", "long tail", "ablation")}, second, cost)


def sentence_start(text: str) -> str:
    """``text`` opening a sentence: a first Latin letter in capitals; a symbol such as μ as it is,
    since its capital (Μ) reads as a Latin M."""
    return text[:1].upper() + text[1:] if text[:1].isascii() else text


def claims_markdown(claims: pd.DataFrame) -> str:
    """:func:`claims_by_network`'s rows as Markdown: each claim by name with the paper's words, then
    one line per network with its verdict and what our runs show."""
    blocks = []
    for key, group in claims.groupby("claim", sort=False):
        name = CLAIM_NAMES[key]
        lines = [f"**{sentence_start(name)}.** The paper: {group['the paper says'].iloc[0]}."]
        lines += [f"- {row['network']}: ***{row['verdict']}***. {sentence_start(row['our runs show'])}."
                  for _, row in group.iterrows()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
