"""The paper profile rehearsed end to end on the CPU: stand-in CIFAR-10, CIFAR-100 and Clothing1M
files in their real formats, the whole grid (every table, every method, one seed) through the
sweep with each run cut to a few iterations (the ``rehearsal`` override), then every experiment
notebook executed with ``-p profile paper`` on those results. What is left untried is what needs a
GPU: the runs' real length and their numbers."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from gdwlib.data.standin import write_stand_ins
from gdwlib.experiments import TABLES, grid
from gdwlib.report import paper_results
from gdwlib.train import find_result

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["10-table2-uniform-noise", "11-table3-flip-noise", "12-table4-long-tail", "13-table5-clothing1m",
             "14-figures", "15-report"]
REAL_NETWORK = {"cifar10": "resnet32", "cifar100": "resnet32", "clothing1m": "resnet18"}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    data, results = write_stand_ins(root / "data"), root / "results"
    options = ["--profile", "paper", "--override", "rehearsal", "--data-dir", str(data), "--results-dir", str(results)]
    out = subprocess.run([sys.executable, "-m", "gdwlib", "sweep", *options, "--device", "cpu", "--workers", "2",
                          "--threads", "1"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "gdwlib", "sweep", *options, "--check"], capture_output=True,
                           text=True, cwd=ROOT)
    assert check.returncode == 0, check.stderr
    pages = {}
    for name in NOTEBOOKS:
        path = root / f"{name}.ipynb"
        papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(path), progress_bar=False,
                                   cwd=str(ROOT), kernel_name="python3",
                                   parameters=dict(profile="paper", override="rehearsal", device="cpu",
                                                   data_dir=str(data), results_dir=str(results), workers=2))
        pages[name] = nbformat.read(path, as_version=4)
    return data, results, pages


def outputs(nb, mime: str) -> str:
    return "\n".join(o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if mime in o.get("data", {}))


def test_every_run_of_the_paper_grid_finished_and_each_table_trains_the_real_network(rehearsal):
    data, results, _ = rehearsal
    groups = grid("paper", override="rehearsal", data_dir=str(data), results_dir=str(results))
    assert set(groups) == {"table2", "table3", "table4", "table5", "ablation", "figures"}
    for table, configs in groups.items():
        finished = [find_result(c) for c in configs]
        assert all(finished), f"{table}: {sum(r is None for r in finished)} runs without a result"
        assert all(r["config"]["override"] == "rehearsal" for r in finished)
        real = {r["config"]["dataset"] for r in finished if r["config"]["model"] == REAL_NETWORK[r["config"]["dataset"]]}
        assert real == {c.dataset for c in configs}, f"{table}: the real network ran on {real} only"


@pytest.mark.parametrize("table, notebook", [("table2", "10-table2-uniform-noise"), ("table3", "11-table3-flip-noise"),
                                             ("table4", "12-table4-long-tail"), ("table5", "13-table5-clothing1m")])
def test_each_table_has_the_papers_rows_and_columns_filled(rehearsal, table, notebook):
    _, _, pages = rehearsal
    html = outputs(pages[notebook], "text/html")
    paper = paper_results()[TABLES[table]["key"]]
    rows = re.findall(r"<tr><th>([^<]+)</th>(.*?)</tr>", html.split("<tbody>", 1)[-1])
    assert [m for m, _ in rows] == TABLES[table]["methods"]
    assert set(TABLES[table]["methods"]) <= set(paper["rows"])
    columns = {c for r in paper["rows"].values() for c in r}
    header = re.findall(r"<th>([^<]+)<br><span class='paper'>paper: ([^<]+)</span></th>", html)
    assert len(header) == len(columns), header
    for method, cells in rows:
        values = re.findall(r"<td>(?:<[bu]>)?([^<]+)", cells)
        assert len(values) == len(columns) and "–" not in values, (method, values)
    assert "REHEARSAL, not results" in outputs(pages[notebook], "text/markdown")


def test_the_figures_and_the_report_are_drawn_from_the_rehearsal(rehearsal):
    _, results, pages = rehearsal
    for name in ("figure3", "figure4", "figure5", "figure6"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 1000, name
    text = outputs(pages["14-figures"], "text/markdown")
    assert text.count("REHEARSAL, not results") >= 4   # one caption per figure
    assert "REHEARSAL, not results" in outputs(pages["15-report"], "text/markdown")
    assert "ResNet-32" in outputs(pages["15-report"], "text/markdown")
