"""What a reader of the built book is spared: papermill's parameter cells, and plumbing code."""
from pathlib import Path

import nbformat
import pytest

from gdwlib.book import hide_injected_parameters

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((ROOT / "notebooks").glob("1[0-9]-*.ipynb"))


def test_injected_parameters_are_removed_from_the_page_and_nothing_else(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'cpu'", metadata={"tags": ["parameters", "remove-cell"]}),
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("show(results)", metadata={"tags": ["remove-input"]}),
        nbformat.v4.new_markdown_cell("## Results"),
    ])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert hide_injected_parameters(path) == 1
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["remove-input"], []]
    assert hide_injected_parameters(path) == 0   # idempotent


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_code_cell_of_an_experiment_page_is_hidden_or_removed(path):
    """An experiment page shows text, tables and figures; its code is one click away or gone, except
    a short example of the public API that the page is about (tagged ``api-example``)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tags = set(cell.metadata.get("tags", []))
            if "api-example" in tags:
                assert len(cell.source.splitlines()) <= 15 and not tags & {"remove-cell", "parameters"}
                continue
            assert tags & {"remove-cell", "remove-input", "hide-input"}, cell.source[:80]
            if "parameters" in tags:
                assert "remove-cell" in tags


# The longest line of code a page shows whole: the code cell of a page is about 615 px wide inside
# (tests/test_browser.py measures it) and its code gdwlib.book.CODE_PX (12) px monospace, about
# 7.2 px a character.
CODE_CHARS = 84


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_line_of_code_a_reader_can_open_fits_the_page(path):
    nb = nbformat.read(path, as_version=4)
    long = [(k, line) for k, cell in enumerate(nb.cells) if cell.cell_type == "code"
            and not set(cell.metadata.get("tags", [])) & {"remove-cell", "remove-input"}
            for line in cell.source.splitlines() if len(line) > CODE_CHARS]
    assert not long, f"code lines over {CODE_CHARS} characters (cell, line): {long[:5]}"


def test_the_books_equation_numbers_are_the_papers():
    """Sphinx numbers labelled equations through the whole book in the order of _toc.yml: the paper's
    Eq. 1-12 keep their numbers only if they are the book's only labelled equations, in that order."""
    import re

    import yaml

    def pages(node):
        for entry in node.get("parts", []) + node.get("chapters", []):
            if "file" in entry:
                yield entry["file"]
            yield from pages(entry)

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    labels = []
    for page in [toc["root"], *pages(toc)]:
        page = page.replace("book/experiments/", "notebooks/")   # papermill runs these into the book
        path = next(p for p in (ROOT / f"{page}.ipynb", ROOT / f"{page}.md") if p.exists())
        texts = ([c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
                 if path.suffix == ".ipynb" else [path.read_text()])
        labels += [m for text in texts for m in re.findall(r"\$\$\s*\((eq-[\w-]+)\)|:label:\s*(\S+)", text)]
    assert [a or b for a, b in labels] == [f"eq-gdw-{k}" for k in range(1, 13)]


def test_the_references_list_is_labelled_as_the_text_cites():
    pytest.importorskip("pybtex")
    from pybtex.database import parse_string

    from gdwlib.book import author_year_labels

    bib = parse_string(r"""
    @book{one, author = {Krizhevsky, Alex}, year = {2009}}
    @article{two, author = {Algan, G{\"o}rkem and Ulusoy, {\.I}lkay}, year = {2020}}
    @article{many, author = {Lin, Tsung-Yi and Goyal, Priya and Doll{\'a}r, Piotr}, year = {2017}}
    @article{same1, author = {Chen, Can and Zheng, Shuhao and Chen, Xi}, year = {2021}}
    @article{same2, author = {Chen, Can and Dou, Dejing and Liu, Xue}, year = {2021}}
    @misc{van, author = {van der Maaten, Laurens and Hinton, Geoffrey}, year = {2008}}
    """, "bibtex")
    assert author_year_labels(bib.entries.values()) == [
        "Krizhevsky, 2009", "Algan and Ulusoy, 2020", "Lin et al., 2017", "Chen et al., 2021a", "Chen et al., 2021b",
        "van der Maaten and Hinton, 2008"]
