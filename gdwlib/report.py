"""Tables and captions from finished runs, beside the paper's numbers.

Nothing here trains or invents a number: every value comes from a result file (or the paper's
``paper_results.json``), and every caption is derived from the configs and devices recorded in
the result files that produced the table.
"""
from __future__ import annotations

import html
import json
import statistics
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .experiments import DATASET_NAMES, Cell
from .profiles import describe_override
from .significance import FAMILY_ALPHA, holm, paired_p_value
from .train import failure, find_result

MODEL_NAMES = {"mlp": "MLP 784-256-256-10", "mlp_bn": "MLP 784-256-256-10 with BatchNorm", "resnet32": "ResNet-32",
               "small_cnn": "small CNN", "small_cnn_strided": "CNN with two strided convolutions of 8 and 16 channels, no BatchNorm",
               "resnet18": "ResNet-18"}


def paper_results() -> dict:
    """The paper's numbers (its Tables 2-5, figure descriptions and claims)."""
    return json.loads(resources.files("gdwlib").joinpath("paper_results.json").read_text())


def collect(cells: Iterable[Cell]) -> pd.DataFrame:
    """One row per run: its cell, seed, final accuracy (NaN unless finished) and status."""
    rows = []
    for cell in cells:
        result = find_result(cell.config)
        failed = None if result else failure(cell.config)
        rows.append({
            "method": cell.method, "column": cell.column, "paper_column": cell.paper_column,
            "label": cell.label, "paper_label": cell.paper_label,
            "seed": cell.config.seed,
            "final_accuracy": result["final_accuracy"] if result else np.nan,
            "wall_time": result["wall_time"] if result else np.nan,
            "status": "ok" if result else ("diverged" if failed else "missing"),
            "cell_config": cell.config,
            "message": failed["message"] if failed else "",
            "result": result,
        })
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1) and counts per (method, column)."""
    def agg(group: pd.DataFrame) -> pd.Series:
        ok = group["final_accuracy"].dropna()
        return pd.Series({"mean": ok.mean() if len(ok) else np.nan,
                          "std": ok.std(ddof=1) if len(ok) > 1 else np.nan,
                          "n": len(ok), "diverged": int((group["status"] == "diverged").sum()),
                          "missing": int((group["status"] == "missing").sum()),
                          "paper_column": group["paper_column"].iloc[0], "label": group["label"].iloc[0],
                          "paper_label": group["paper_label"].iloc[0]})
    return runs.groupby(["method", "column"], sort=False).apply(agg, include_groups=False)


def ranks(summary: pd.DataFrame) -> dict[tuple[str, str], int]:
    """1 for the best and 2 for the second-best mean of each column (ties share a rank)."""
    out = {}
    for column, group in summary.groupby(level="column", sort=False):
        means = group["mean"].dropna().round(2)
        order = sorted(set(means), reverse=True)
        for (method, _), m in means.items():
            rank = order.index(m) + 1
            if rank <= 2:
                out[(method, column)] = rank
    return out


def _fmt(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.2f}" + ("" if np.isnan(std) else f" ± {std:.2f}")


def paper_columns(paper_column: str, dataset: str) -> list[str]:
    """The paper's columns shown beside one of ours: the one it is compared with, and, where our
    data set is not one of the paper's (Fashion-MNIST), the same setting on the paper's other data set."""
    if dataset in PAPER_DATASETS or "/" not in paper_column:
        return [paper_column]
    level = paper_column.split("/", 1)[1]
    return [f"{d}/{level}" for d in PAPER_DATASETS]


PAPER_DATASETS = ("cifar10", "cifar100")


def table_html(summary: pd.DataFrame, table_key: str, methods: list[str], columns: list[str],
               level_name: str) -> str:
    """The paper's layout: methods as rows, settings as columns; our mean ± std with the best in
    bold and the second best underlined, and the paper's values in grey below each cell (CIFAR-10
    and CIFAR-100 where ours is on another data set)."""
    paper = paper_results()[table_key]["rows"]
    best = ranks(summary)
    labels = summary.reset_index().drop_duplicates("column").set_index("column")

    def shown(c):
        return paper_columns(labels.loc[c, "paper_column"], c.split("/")[0])

    def names(c):
        cols = shown(c)
        if len(cols) == 1:
            return html.escape(labels.loc[c, "paper_label"])
        return " / ".join(DATASET_NAMES[p.split("/")[0]] for p in cols) + ", " + html.escape(
            labels.loc[c, "paper_label"].split(", ", 1)[-1])
    head = "".join(f"<th>{html.escape(labels.loc[c, 'label'])}<br><span class='paper'>paper: {names(c)}</span></th>"
                   for c in columns)
    body = []
    for m in methods:
        cells = []
        for c in columns:
            ours = summary.loc[(m, c)] if (m, c) in summary.index else None
            text = _fmt(ours["mean"], ours["std"]) if ours is not None else "–"
            if ours is not None and ours["diverged"]:
                text += f" <span class='note'>({int(ours['diverged'])} diverged)</span>"
            rank = best.get((m, c))
            if rank == 1:
                text = f"<b>{text}</b>"
            elif rank == 2:
                text = f"<u>{text}</u>"
            refs = [paper.get(m, {}).get(p) for p in shown(c)]
            ref_text = "<br>".join(_fmt(r["mean"], r["std"] if r["std"] is not None else np.nan) if r else "–"
                                   for r in refs)
            cells.append(f"<td>{text}<br><span class='paper'>{ref_text}</span></td>")
        body.append(f"<tr><th>{html.escape(m)}</th>{''.join(cells)}</tr>")
    style = ("<style>.gdw-table td,.gdw-table th{text-align:center;padding:3px 8px}"
             ".gdw-table .paper{color:#777;font-size:85%}.gdw-table .note{color:#b00;font-size:80%}</style>")
    return (f"{style}<table class='gdw-table'><thead><tr><th>{html.escape(level_name)}</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def runs_behind(runs: pd.DataFrame, profile: str) -> str:
    """HTML, folded: every cell's runs by seed (run id, the folder of its result file) and the
    command that reruns one of them."""
    from .cli import command_for

    rows = []
    for (method, label), group in runs.groupby(["method", "label"], sort=False):
        ids = [f"<code>{html.escape(r['run_id'])}</code>" if r else f"seed {s}: no result yet"
               for s, r in zip(group["seed"], group["result"])]
        rows.append(f"<tr><td>{html.escape(method)}</td><td>{html.escape(label)}</td><td>{'<br>'.join(ids)}</td></tr>")
    first = runs.iloc[0]
    return ("<details class='gdw-runs'><summary>The runs behind each cell, and how to rerun one</summary>"
            "<p>Each run's result file is <code>results/runs/&lt;run id&gt;/result.json</code> (in the archive of "
            "the summary page). This command retrains the first run below from scratch (with its result file "
            "present, it returns the finished run):</p>"
            f"<pre style='white-space:pre-wrap'>{html.escape(command_for(first['cell_config'], profile))}</pre>"
            "<table><thead><tr><th scope='col'>method</th><th scope='col'>setting</th><th scope='col'>runs, by seed</th>"
            "</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></details>"
            "<style>.gdw-runs code{font-size:75%;word-break:break-all}.gdw-runs td{vertical-align:top}</style>")


def setting_caption(runs: pd.DataFrame) -> str:
    """What produced the numbers: data set, model, training size, epochs, seeds, device, code."""
    results = [r for r in runs["result"] if r]
    if not results:
        return "No finished runs yet."
    parts = []
    for key, group in _group_by_setting(results).items():
        dataset, model, train_size, epochs = key
        seeds = sorted({r["config"]["seed"] for r in group})
        devices = sorted({f"{r['device']['type']} ({r['device'].get('name', '')})" for r in group})
        commits = sorted({r["code"]["commit"] for r in group})
        sizes = sorted({r["data"]["train_size"] for r in group})
        size = f"{sizes[0]:,}" if len(sizes) == 1 else f"{min(sizes):,}-{max(sizes):,}"
        staged = sorted({r["config"]["method"] for r in group} & {"Fine-tuning", "GLC"})  # their own epochs
        own_setup = f" ({' and '.join(staged)}: see their set-up)" if staged else ""
        parts.append(
            f"{DATASET_NAMES.get(dataset, dataset)}, {MODEL_NAMES.get(model, model)}, {size} training images"
            f"{' (subset)' if train_size else ''}, {epochs} epochs{own_setup}, "
            f"seeds {', '.join(map(str, seeds))}; {len(group)} runs on {'; '.join(devices)}; "
            f"gdwlib {', '.join(commits)}")
    overrides = sorted({r["config"].get("override") for r in results} - {None})
    warning = "; ".join(f"**{describe_override(o)}**" for o in overrides)
    return (warning + ". " if warning else "") + " | ".join(parts)


def _group_by_setting(results: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        c = r["config"]
        groups.setdefault((c["dataset"], c["model"], c["train_size"], c["epochs"]), []).append(r)
    return groups


def paper_caption(table_key: str) -> str:
    if table_key == "table5_clothing1m":
        return "Paper: Clothing1M, ResNet-18 pre-trained on ImageNet, 5 epochs, one run."
    return "Paper: CIFAR-10/100, ResNet-32, 80 epochs, mean ± std over 5 seeds."


def per_seed(runs: pd.DataFrame, method: str, column: str) -> pd.Series:
    """Final accuracy of ``method`` in ``column`` by seed."""
    return runs[(runs.method == method) & (runs.column == column)].set_index("seed")["final_accuracy"]


def difference(runs: pd.DataFrame, a: str, b: str, column: str) -> dict:
    """Mean difference ``a - b`` of final accuracy in ``column`` over seeds they share, with the
    standard error of the paired differences (NaN with fewer than two pairs)."""
    paired = (per_seed(runs, a, column) - per_seed(runs, b, column)).dropna()
    se = paired.std(ddof=1) / np.sqrt(len(paired)) if len(paired) > 1 else np.nan
    return {"diff": paired.mean() if len(paired) else np.nan, "se": se, "n": len(paired)}


def compare(runs: pd.DataFrame, a: str, b: str, column: str) -> dict:
    """``a - b`` over paired seeds with its standard error and the 2-SE rule's call:
    ``above`` (a beyond noise above b) or ``below``."""
    d = difference(runs, a, b, column)
    called = d["n"] > 1 and not np.isnan(d["se"])
    return {**d, "above": bool(called and d["diff"] > 2 * d["se"]), "below": bool(called and d["diff"] < -2 * d["se"])}


def comparison(runs: pd.DataFrame, method: str, others: list[str], columns: list[str]) -> pd.DataFrame:
    """``method`` minus each of ``others`` per column, over paired seeds: mean difference, its
    standard error, the paired t-test's p-value adjusted by Holm's method over all the rows (one
    family: the table's comparisons), and a verdict that calls a difference only where the adjusted
    p-value is below :data:`~gdwlib.significance.FAMILY_ALPHA`."""
    rows = []
    for other in others:
        for column in columns:
            d = difference(runs, method, other, column)
            paired = (per_seed(runs, method, column) - per_seed(runs, other, column)).dropna()
            label = runs.loc[runs.column == column, "label"].iloc[0]
            rows.append({"versus": other, "setting": label, "difference": d["diff"], "standard error": d["se"],
                         "seeds": d["n"], "p": paired_p_value(paired)})
    out = pd.DataFrame(rows, columns=["versus", "setting", "difference", "standard error", "seeds", "p"])
    out["p (Holm)"] = holm(out["p"]) if len(out) else []
    out["verdict"] = [("too few seeds" if np.isnan(p) else "within noise" if p >= FAMILY_ALPHA
                       else f"{method} better" if diff > 0 else f"{other} better")
                      for p, diff, other in zip(out["p (Holm)"], out["difference"], out["versus"])]
    return out.drop(columns="p").round({"difference": 2, "standard error": 2, "p (Holm)": 4})


def comparison_table(frame: pd.DataFrame, method: str = "GDW") -> pd.DataFrame:
    """:func:`comparison`'s rows as a methods-by-settings table: each cell the difference ± its
    standard error, followed by "better" or "worse" (for ``method``) where it is called."""
    def cell(row) -> str:
        call = {f"{method} better": " better", f"{row['versus']} better": " worse"}.get(row["verdict"], "")
        spread = " (one seed)" if np.isnan(row["standard error"]) else f" ± {row['standard error']:.2f}"
        return f"{row['difference']:+.2f}{spread}{call}"
    table = frame.assign(cell=frame.apply(cell, axis=1)).pivot(index="versus", columns="setting", values="cell")
    table = table.loc[list(dict.fromkeys(frame["versus"])), list(dict.fromkeys(frame["setting"]))]
    table.index.name, table.columns.name = f"{method} minus", None
    return table


def comparison_counts(frame: pd.DataFrame, method: str = "GDW") -> str:
    """One sentence: in how many of :func:`comparison`'s pairs ``method`` is called better, worse,
    or neither."""
    v = frame["verdict"]
    worse = int((v.str.endswith(" better") & (v != f"{method} better")).sum())
    return (f"Across all {len(frame)} (method, setting) pairs: {method} better in {int((v == f'{method} better').sum())}, "
            f"worse in {worse}, within noise in {int((v == 'within noise').sum())}"
            + (f", too few seeds in {int((v == 'too few seeds').sum())}" if (v == "too few seeds").any() else "") + ".")


def show_table(runs: pd.DataFrame, table_key: str, methods: list[str], level_name: str, profile: str | None = None):
    """Display a table of the paper with its caption and, given the profile that made them, the runs
    behind it (in a notebook)."""
    from IPython.display import HTML, Markdown, display

    columns = list(dict.fromkeys(runs["column"]))
    display(HTML(table_html(summarize(runs), table_key, methods, columns, level_name)))
    missing = runs[runs.status == "missing"]
    both = len(paper_columns(runs["paper_column"].iloc[0], columns[0].split("/")[0])) > 1
    grey = ("the paper's numbers, CIFAR-10 above CIFAR-100" if both else "the paper's number")
    display(Markdown(
        f"**Our runs** (mean ± std over seeds of the final test accuracy in %, the mean of the last 5 epochs; "
        f"best in bold, second best underlined): {setting_caption(runs)}.  \n"
        f"**Grey, below each cell: {grey}.** {paper_caption(table_key)}"
        + (f"  \n**{len(missing)} runs have no result yet.**" if len(missing) else "")))
    if profile is not None:
        display(HTML(runs_behind(runs, profile)))


def iteration_cost(results_dir: str, rounds: int = 7, iters: int = 2) -> dict:
    """GDW's and MW-Net's time per training iteration on ResNet-32 (CIFAR-shaped batches of 100),
    interleaved in one process by ``benchmarks/bench_methods.py``; measured once per results
    directory and cached there (``benchmark.json``).

    ``gdw_over_mwnet`` is the median over rounds of the round's GDW / MW-Net ratio: the two run
    back to back within a round, so a change in the machine's load cancels in the ratio, which it
    does not in a ratio of the two medians."""
    from .cost import cached_benchmark

    data, _ = cached_benchmark(Path(results_dir) / "benchmark.json", ["BaseModel", "MWNet", "GDW"], rounds, iters)
    variants = data["shapes"]["cifar"]["variants"]
    round_ratios = [g / m for g, m in zip(variants["GDW"]["ms_rounds"], variants["MWNet"]["ms_rounds"])]
    return {"gdw_over_mwnet": statistics.median(round_ratios), "round_ratios": round_ratios, "machine": data["machine"]}


def gpu_check_summary(path: str | Path | None = None) -> str:
    """The latest ``benchmarks/gpu_check.py`` result as Markdown, labelled with its device and date,
    or a plain statement that no GPU has been measured."""
    from .cost import GPU_CHECK

    path = Path(path or GPU_CHECK)
    if not path.exists():
        return ("**No GPU has been measured yet.** Every time in this book comes from a CPU. "
                "`make gpu-check` on a machine with CUDA (about 7 minutes) writes `benchmarks/measured/gpu-check.json`; "
                "the next build of the book shows it here.")
    result = json.loads(path.read_text())
    m = result["machine"]
    body = path.with_suffix(".md").read_text().split("\n", 1)[1] if path.with_suffix(".md").exists() else ""
    return (f"**Measured on {m['name']} ({m['type']}), {m['date']}**, torch {m['torch']}, "
            f"gdwlib {m['gdwlib']} ({m['commit']}), by `benchmarks/gpu_check.py`:\n" + body.replace("\n# ", "\n### ")
            .replace("\n## ", "\n#### "))


# One rule for every claim's verdict; the report and the summary print it.
VERDICT_RULE = (
    "**held**: the effect the claim states is beyond noise (larger than two standard errors of the seed-by-seed "
    "differences) and reaches the size the paper states, where it states one; **direction only**: beyond noise "
    "but short of the paper's size; **not held**: within noise, or the other way; **not tested**: the runs the "
    "claim needs were not made. The cost claim has its own measurement (GDW's and MW-Net's time per iteration, "
    "interleaved in one process, the median over rounds of the round's ratio): held when GDW's is at most 5% "
    "above MW-Net's.")


def verdict(beyond_noise: bool, size_reached: bool = True) -> str:
    """The rule of :data:`VERDICT_RULE` for a claim whose runs were made."""
    return "not held" if not beyond_noise else "held" if size_reached else "direction only"


def paper_gap(table_key: str, column: str, a: str = "GDW", b: str = "MWNet") -> float:
    """``a - b`` in the paper's ``table_key`` at ``column``, in points."""
    rows = paper_results()[table_key]["rows"]
    return rows[a][column]["mean"] - rows[b][column]["mean"]


def relative_gain(a: float, b: float) -> float:
    """``a`` over ``b`` in percent of ``b``: the reading of the paper's "more than 3% gain"
    under which its own Table 2 supports it (84.11 against 81.55 is 2.56 points, 3.14%)."""
    return 100.0 * (a - b) / b


def paper_second_best_gain(column: str) -> tuple[str, float, float]:
    """The paper's Table 2 at ``column``: the second-best method, GDW's lead over it in points and
    as a relative gain (%)."""
    rows = paper_results()["table2_uniform_noise"]["rows"]
    means = {m: v[column]["mean"] for m, v in rows.items() if column in v}
    second = max((m for m in means if m != "GDW"), key=means.get)
    return second, means["GDW"] - means[second], relative_gain(means["GDW"], means[second])


# The paper's stated relative gains at 60% uniform noise, per data set of its Table 2 (our
# Fashion-MNIST column is compared with the paper's CIFAR-10 column, so it inherits CIFAR-10's).
PAPER_THRESHOLDS = {"cifar10": 3.0, "cifar100": 6.0}


def compute_summary(results: list[dict]) -> str:
    """What was run, read from the result files: how many runs, on which devices, and the compute
    they took (the sum of their wall times; an interrupted run counts its epochs once)."""
    if not results:
        return "No finished runs yet."
    devices = sorted({f"{r['device']['type']} ({r['device'].get('name', '?')})" for r in results})
    threads = sorted({r["device"].get("threads") for r in results if r["device"].get("threads")})
    hours = sum(r["wall_time"] for r in results) / 3600
    epochs = sorted({len(r["history"]) for r in results})
    span = lambda v: f"{v[0]}" if v[0] == v[-1] else f"{v[0]}-{v[-1]}"  # noqa: E731
    return (f"{len(results)} runs, {span(epochs)} epochs each, on {'; '.join(devices)}"
            f"{f' ({span(threads)} thread(s) per run)' if threads else ''}: "
            f"{hours:.2f} hours of training in all, summed over the runs' wall times.")


def headline_with_paper(runs: pd.DataFrame, methods: list[str], levels: Iterable[str] = ("0.4", "0.6")) -> pd.DataFrame:
    """Our mean ± std beside the paper's, for ``methods`` at the uniform-noise ``levels``: a
    column of ours per data set and level, each followed by the paper's corresponding column."""
    s = summarize(runs)
    paper = paper_results()["table2_uniform_noise"]["rows"]
    out = {}
    for column in dict.fromkeys(runs["column"]):
        if column.rsplit("/", 1)[1] not in levels:
            continue
        cell = runs[runs.column == column].iloc[0]
        out[f"ours: {cell.label}"] = {m: _fmt(s.loc[(m, column), "mean"], s.loc[(m, column), "std"])
                                      for m in methods if (m, column) in s.index}
        ref = {m: paper.get(m, {}).get(cell.paper_column) for m in methods}
        out[f"paper: {cell.paper_label}"] = {m: _fmt(r["mean"], r["std"] if r["std"] is not None else np.nan)
                                             if r else "–" for m, r in ref.items()}
    return pd.DataFrame(out)


def run_times(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean wall time per run of each method (finished runs), and its ratio to BaseModel's.
    Fine-tuning's includes the BaseModel run of the same setting and seed that it starts from."""
    ok = runs[runs.status == "ok"].copy()
    base = ok[ok.method == "BaseModel"].set_index(["column", "seed"])["wall_time"]
    tuned = ok.method == "Fine-tuning"
    ok.loc[tuned, "wall_time"] += base.reindex(list(zip(ok.loc[tuned, "column"], ok.loc[tuned, "seed"]))).to_numpy()
    t = ok.groupby("method", sort=False)["wall_time"].agg(["mean", "count"])
    t["x BaseModel"] = t["mean"] / t.loc["BaseModel", "mean"] if "BaseModel" in t.index else np.nan
    return t.rename(columns={"mean": "seconds per run", "count": "runs"}).round(2)


def headline(runs: pd.DataFrame, methods: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean ± std of the final accuracy of ``methods`` in ``columns`` (methods as rows)."""
    s = summarize(runs)
    labels = dict(zip(runs["column"], runs["label"]))
    return pd.DataFrame({labels[c]: {m: _fmt(s.loc[(m, c), "mean"], s.loc[(m, c), "std"])
                                           for m in methods if (m, c) in s.index} for c in columns})


def _ordinal(k: int) -> str:
    return {1: "best", 2: "second", 3: "third"}.get(k, f"{k}th")


def paper_beyond_noise(table_key: str, column: str, a: str, b: str, seeds: int = 5) -> bool:
    """Whether ``a - b`` in the paper's table exceeds two standard errors of an unpaired difference of
    means over ``seeds`` runs (its printed standard deviations; the paper's runs are not paired)."""
    rows = paper_results()[table_key]["rows"]
    x, y = rows[a][column], rows[b][column]
    if x["std"] is None or y["std"] is None:
        return False
    return abs(x["mean"] - y["mean"]) > 2 * np.sqrt((x["std"] ** 2 + y["std"] ** 2) / seeds)


def table_findings(runs: pd.DataFrame, table_key: str, methods: list[str]) -> str:
    """What our numbers show in a table, column by column, in words computed from them: the best
    method and GDW's place, ours beside the paper's, and each sharp difference: a method whose
    difference from BaseModel is beyond noise in our runs and in the paper's, with opposite signs."""
    s = summarize(runs)
    paper = paper_results()[table_key]["rows"]
    lines = []
    for column in dict.fromkeys(runs["column"]):
        means = s.xs(column, level="column")["mean"].reindex(methods).dropna()
        if "GDW" not in means or len(means) < 2:
            continue
        cell = runs[runs.column == column].iloc[0]
        theirs = {m: paper[m][cell.paper_column]["mean"] for m in means.index if cell.paper_column in paper.get(m, {})}
        text = f"- **{cell.label}**: {_places(means.to_dict())} of {len(means)}."
        if "GDW" in theirs:
            text += f" In the paper ({cell.paper_label}): {_places(theirs)}."
        if "BaseModel" in theirs:
            for m in theirs:
                d, gap = compare(runs, m, "BaseModel", column), theirs[m] - theirs["BaseModel"]
                if ((d["above"] and gap < 0) or (d["below"] and gap > 0)) and paper_beyond_noise(
                        table_key, cell.paper_column, m, "BaseModel"):
                    text += (f" **{m} is {abs(d['diff']):.2f} points {'above' if d['above'] else 'below'} BaseModel "
                             f"here, where the paper has it {abs(gap):.2f} {'above' if gap > 0 else 'below'}.**")
        lines.append(text)
    return "\n".join(lines)


def _places(means: dict[str, float]) -> str:
    best = max(means, key=means.get)
    place = 1 + sum(v > means["GDW"] for v in means.values())
    return ("GDW has the best mean" if best == "GDW" else
            f"{best} has the best mean ({means[best]:.2f}); GDW is {_ordinal(place)}")


def archive_results(configs, path: str | Path) -> int:
    """Write the result files of the finished runs among ``configs`` into one zip archive at ``path``
    (atomically; ``runs/<run id>/result.json`` inside), for readers to download. Returns how many."""
    import io
    import zipfile

    from .results import write_bytes
    from .train import run_directory

    buffer, count = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for config in dict.fromkeys(configs):
            result = find_result(config)
            if result:
                archive.write(run_directory(config) / "result.json", f"runs/{result['run_id']}/result.json")
                count += 1
    write_bytes(path, buffer.getvalue())
    Path(path).chmod(0o644)   # published: readable by the web server
    return count
