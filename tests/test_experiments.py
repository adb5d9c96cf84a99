"""The experiment notebooks, run by papermill with the smoke profile: each produces what the book
needs (tables with every row and column, the figure files, the claims), from fresh runs."""
import re
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


def execute(name: str, workdir: Path, **params) -> nbformat.NotebookNode:
    out = workdir / f"{name}.ipynb"
    parameters = {"profile": "smoke", "results_dir": str(workdir / "results"), "workers": 2, **params}
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=parameters,
                               progress_bar=False, cwd=str(ROOT), kernel_name="python3")
    return nbformat.read(out, as_version=4)


def outputs(nb, mime: str) -> list[str]:
    return [o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if mime in o.get("data", {})]


def gdw_tables(nb) -> list[tuple[list[str], int]]:
    """(row names, number of setting columns) of each results table the notebook displays."""
    tables = []
    for html in outputs(nb, "text/html"):
        if "class='gdw-table'" not in html:
            continue
        head, body = html.split("</thead>")
        rows = re.findall(r"<tr><th>([^<]+)</th>", body)
        tables.append((rows, head.count("<th>") - 1))
    return tables


NOISY = ["BaseModel", "Fine-tuning", "Co-teach", "GLC", "L2RW", "INSW", "MWNet", "Soft-label", "Gen-label", "GDW"]


@pytest.mark.parametrize("name, rows", [
    ("10-table2-uniform-noise", NOISY),
    ("11-table3-flip-noise", NOISY),
    ("12-table4-long-tail", ["BaseModel", "Fine-tuning", "Focal", "Balanced", "L2RW", "INSW", "MWNet", "GDW"]),
])
def test_table_notebook_shows_every_row_and_column(workdir, name, rows):
    nb = execute(name, workdir)
    assert gdw_tables(nb) == [(rows, 3)]
    html = "\n".join(outputs(nb, "text/html"))
    runs = html.split("<details class='gdw-runs'>")[1]
    assert runs.split("<tbody>")[1].split("</tbody>")[0].count("<code>") == len(rows) * 3 and "python -m gdwlib run --profile smoke --dataset fashion-mnist" in runs
    versus = next(h for h in outputs(nb, "text/html") if "GDW minus" in h)
    assert all(f">{m}</th>" in versus for m in rows if m != "GDW")   # the methods head the rows, no 0..N
    findings = next(md for md in outputs(nb, "text/markdown") if md.startswith("- **Fashion-MNIST"))
    assert findings.count("\n") == 2 and "In the paper (CIFAR-10" in findings
    caption = next(md for md in outputs(nb, "text/markdown") if md.startswith("**Our runs**"))
    assert "400 training images" in caption and "seeds 1;" in caption and "on cpu" in caption
    assert "runs have no result yet" not in caption


def test_clothing1m_page_says_it_was_not_run_and_how_to_run_it(workdir):
    nb = execute("13-table5-clothing1m", workdir)
    text = "\n".join(outputs(nb, "text/markdown"))
    assert "Not run here" in text and "papermill notebooks/13-table5-clothing1m.ipynb" in text
    assert "69.39" in "\n".join(outputs(nb, "text/html"))  # the paper's GDW number


def test_figures_notebook_writes_the_four_figures_and_the_ablation(workdir):
    figures = workdir / "figures"
    nb = execute("14-figures", workdir, figures_dir=str(figures))
    assert sorted(p.name for p in figures.iterdir()) == [f"figure{k}.png" for k in (3, 4, 5, 6)]
    assert all(p.stat().st_size > 5000 for p in figures.iterdir())
    assert gdw_tables(nb) == [(["MWNet", "GDW", "GDW (no constraint)"], 3)]


def test_report_notebook_judges_every_claim(workdir):
    from gdwlib.claims import CLAIM_NAMES, CLAIMS, sentence_start

    nb = execute("15-report", workdir)
    claims = "\n".join(md for md in outputs(nb, "text/markdown") if "The paper:" in md)
    for key in CLAIMS:
        assert f"**{sentence_start(CLAIM_NAMES[key])}.** The paper:" in claims
    # every claim on each network: the MLP of the profile and the CNN without BatchNorm
    assert len(re.findall(r": \*\*\*(held|direction only|not held|not tested)\*\*\*\.", claims)) == 2 * len(CLAIMS)
    assert "- MLP 784-256-256-10 with BatchNorm: ***" in claims
    assert "- CNN with two strided convolutions of 8 and 16 channels, no BatchNorm: ***" in claims
    rule = "\n".join(outputs(nb, "text/markdown"))
    assert "**direction only**" in rule and "18% of the time with 1 seeds" not in rule   # one seed: no error rate


def test_summary_puts_the_paper_beside_us_and_gives_every_verdict(workdir):
    import json
    import zipfile
    from html import unescape

    from gdwlib.claims import CLAIM_NAMES, CLAIMS

    archive = workdir / "results-smoke.zip"
    nb = execute("16-summary", workdir, archive=str(archive))
    html = outputs(nb, "text/html")
    headline = next(h for h in html if "paper: CIFAR-10, 40%" in h)
    for column in ("ours: Fashion-MNIST, 40%", "ours: Fashion-MNIST, 60%", "paper: CIFAR-10, 60%"):
        assert column in headline
    assert "84.38" in headline                 # the paper's BaseModel at CIFAR-10 40%, from paper_results.json
    second = [h for h in html if "paper: CIFAR-10, 40%" in h][1]   # the second network's, after the MLP's
    assert second != headline and "GDW" in second and "MWNet" in second
    matrix = unescape(next(h for h in html if "the paper's claim" in unescape(h)))
    assert all(CLAIM_NAMES[k] in matrix for k in CLAIMS) and "background-color" in matrix
    markdown = "\n".join(outputs(nb, "text/markdown"))
    assert len(re.findall(r": \*\*\*(held|direction only|not held|not tested)\*\*\*\.", markdown)) == 2 * len(CLAIMS)
    assert "**MLP 784-256-256-10 with BatchNorm**:" in markdown and "Not tested here" in markdown
    assert "hours of training in all" in markdown and "seeds 1;" in markdown   # the smoke profile: one seed
    assert "The same on the second network. Fashion-MNIST, CNN with two strided convolutions" in markdown
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        ids = {json.loads(z.read(n))["run_id"] for n in names}
    finished = len(list((workdir / "results" / "runs").glob("*/result.json")))
    assert len(names) == len(ids) == finished > 0
    assert f"The result file of each of the {finished} finished runs" in markdown
    assert "{download}`results-smoke.zip <results-smoke.zip>`" in markdown


def test_the_book_never_trains_the_paper_profile(workdir):
    """Without results, a paper-profile page stops at once with the missing runs and the sweep
    command that makes them (it would otherwise start hundreds of GPU runs)."""
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        execute("10-table2-uniform-noise", workdir, profile="paper", device="cpu")
    message = str(raised.value)
    assert "300 run(s) of the 'paper' profile have no result" in message
    assert "GDW          cifar100 uniform 60%: seeds 1, 2, 3, 4, 5" in message
    assert "python -m gdwlib sweep --profile paper" in message
    assert not list((workdir / "results").glob("runs/*cifar*"))


def test_own_data_chapter_trains_both_ways_and_compares_the_detectors(workdir):
    """The chapter on the smoke profile: the API loop and `gdw fit` on its example folders, its
    counts re-derived here from the files it wrote, and the detection comparison on both networks."""
    import csv

    nb = execute("17-own-data", workdir, train_per_class=30, fit_epochs=3, work_dir=str(workdir / "own"))
    text = "\n".join(outputs(nb, "text/markdown"))
    with open(workdir / "own" / "folders" / "truth.csv") as f:
        truth = {row["path"]: row for row in csv.DictReader(f)}
    with open(workdir / "own" / "fit" / "label_issues.csv") as f:
        top = list(csv.DictReader(f))[:16]
    assert len(truth) == 300 and {row["given"] for row in top} <= {row["given"] for row in truth.values()}
    root = str(workdir / "own" / "folders") + "/"
    hits = sum(truth[row["path"].replace(root, "")]["true"] != row["given"] for row in top)
    assert f"{hits} of the 16 most suspect images have a wrong label" in text
    assert "After 3 epochs: test accuracy" in text and "python -m gdwlib fit \\\n  --train folders/train \\\n" in text
    assert len([o for o in outputs(nb, "image/png")]) == 2 + 2   # weights, suspects; one plot per network
    for network in ("MLP 784-256-256-10 with BatchNorm", "CNN with two strided convolutions"):
        assert f"### {network}" in text
    assert text.count("- AUROC: GDW's weight beats cleanlab in every seed in") == 2
    tables = [h for h in outputs(nb, "text/html") if "<table" in h]   # AUROC, AUPRC, P@k, accuracy, cost per network
    assert len(tables) == 2 * 5 and all("uniform 40%" in h and "uniform 20%, long tail μ=0.1" in h for h in tables)
