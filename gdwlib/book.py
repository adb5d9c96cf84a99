"""What the book build adds to Jupyter Book: tidy executed notebooks, and each script once.

papermill writes the parameters a notebook was run with into a new cell tagged
``injected-parameters``; Jupyter Book knows nothing of that tag and would print the cell at the
top of the page. :func:`hide_injected_parameters` tags it ``remove-cell``, as the notebooks'
own ``parameters`` cells already are, so a page opens with its text and results (the values
stay in the notebook, which the page's download button gives).

    python -m gdwlib.book book/experiments/*.ipynb

The module is also a Sphinx extension (``_config.yml``): sphinx-thebe registers its inline
settings script twice, so every page declared ``const THEBE_JS_URL`` twice and the browser
reported a syntax error on each; :func:`unique_scripts` drops the repeat. It also adds the
book's own style sheet (:data:`CSS`), written into ``_static`` when the build finishes, and the
bibliography style :data:`BIB_STYLE`, whose list labels ("Chen et al., 2021") read as the
author-year citations in the text do.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

PLUMBING = ("injected-parameters", "parameters")
# The page as the book's theme lays it out in a 1280-px-wide window (tests/test_browser.py measures
# both): the body text's size and the width of a code cell's output area, in CSS pixels. A figure
# no wider than COLUMN_PX is shown at its own size, so its text keeps the size it was drawn at.
BODY_PX = 16
COLUMN_PX = 676
# A figure for the page: drawn at FIGURE_DPI (Jupyter saves the PNG at the figure's dpi) its
# width in pixels is inches * FIGURE_DPI, and text of FIGURE_FONT_PT points is BODY_PX high.
FIGURE_DPI = 100
FIGURE_FONT_PT = BODY_PX * 72 / FIGURE_DPI
# The widest figure shown at its own size: saved with bbox_inches="tight", as Jupyter's inline
# backend does, a figure gains 0.1 in on either side.
FIGURE_WIDTH_IN = COLUMN_PX / FIGURE_DPI - 0.2
CSS_FILE = "gdw-book.css"
# A cell's printed output (text, a traceback) wraps its long lines, as Jupyter shows them, instead
# of hiding their ends behind a scroll bar that many browsers draw only while scrolling. Code a
# reader may copy (the cells' sources) is left as written, in 12-px monospace (as GitHub shows
# code), so that a line of tests/test_book.py's CODE_CHARS fits the cell: keeping it within that
# is the notebook's job.
CODE_PX = 12
# The pybtex style the references page is written in (``bibtex_default_style`` in _config.yml).
BIB_STYLE = "gdw-author-year"
CSS = """
.bd-article div.cell_output pre {
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}
.bd-article div.cell_input pre {
  font-size: %dpx;
}
""" % CODE_PX


def hide_injected_parameters(path: str | Path) -> int:
    """Tag the papermill parameter cells of the notebook at ``path`` ``remove-cell`` (in place);
    returns how many cells were tagged anew."""
    nb = nbformat.read(path, as_version=4)
    changed = 0
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if any(t in tags for t in PLUMBING) and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed += 1
    if changed:
        nbformat.write(nb, path)
    return changed


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    """Sphinx ``html-page-context``: keep the first of scripts with the same file and attributes
    (an inline script's file is ``None`` or ``""``, depending on when it was added)."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", str(script)) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def write_css(app, exception) -> None:
    """Sphinx ``build-finished``: the style sheet :func:`setup` links on every page."""
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        (static / CSS_FILE).write_text(CSS)


def author_year_label(entry) -> str:
    """The list label of a pybtex entry as the text cites it: "Krizhevsky, 2009", "Algan and
    Ulusoy, 2020", "Chen et al., 2021" (last names with their TeX accents resolved)."""
    from pybtex.richtext import Text

    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text") for p in people]
    who = names[0] + " et al." if len(names) > 2 else " and ".join(names) or entry.key
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


def author_year_labels(entries) -> list[str]:
    """:func:`author_year_label` of each entry, a year shared by two labels told apart as the
    author-year style does (2021a, 2021b, in list order)."""
    from collections import Counter

    labels = [author_year_label(e) for e in entries]
    shared, seen = Counter(labels), Counter()
    out = []
    for label in labels:
        seen[label] += 1
        out.append(label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1] if shared[label] > 1 else label)
    return out


def register_bib_style() -> None:
    """Register :data:`BIB_STYLE` with pybtex: the plain style's entries, sorted by author and
    year, under :func:`author_year_labels`."""
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.unsrt import Style
    from pybtex.style.labels import BaseLabelStyle

    class Labels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            return iter(author_year_labels(sorted_entries))

    class AuthorYear(Style):
        default_label_style = BIB_STYLE
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", BIB_STYLE, Labels, force=True)
    register_plugin("pybtex.style.formatting", BIB_STYLE, AuthorYear, force=True)


def setup(app):
    register_bib_style()
    app.connect("html-page-context", unique_scripts)
    app.connect("build-finished", write_css)
    app.add_css_file(CSS_FILE)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    for name in sys.argv[1:]:
        hide_injected_parameters(name)
