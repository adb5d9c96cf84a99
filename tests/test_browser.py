r"""The built book as a reader's browser shows it: headless Chromium, served from localhost only.

The book is the one at ``$GDW_BOOK_HTML`` (``make browser-test`` sets it to ``_build/html``), or
else a book built here from the repository's sources with the ``smoke`` profile (a few minutes).
Every page of ``_toc.yml`` is opened and checked: MathJax's output wherever there is math,
every image loaded, no error in the browser console, every internal link leading to a page that
exists, no resource fetched from anywhere but the book's own server, and, on a notebook's page,
a download button for the notebook. Screenshots of the pages readers open first go to
``<book>/../screenshots/`` (``_build/screenshots/``).

Each page is then read as a reader sees it in the test's 1280-px-wide window, with every "Show
code cell source" opened, by five rules, a test each:

- everything fits: no element's content is wider than its box (a code line or a table behind a
  horizontal scroll bar reads as cut off in browsers that draw scroll bars only while
  scrolling), nothing sticks out of the article's column, the page never scrolls sideways;
- no source text: no TeX (``$w^c_{nt}$``, ``\omega``, ``\(``) and no Sphinx or MyST role
  (``:meth:``, ``{doc}``) left in the text outside code;
- figures at their own size: an image the browser shrinks has its text shrunk with it, so every
  image is shown at 90% of its pixel width or more; the plotting code draws text at the body's
  size in figures no wider than a cell's output area (``gdwlib.book.BODY_PX`` and
  ``COLUMN_PX``, both checked here against the page);
- no table opens with a column of row numbers 0..N-1 (a pandas index nobody named);
- no code shown that only renders the page: a cell using ``IPython.display`` is plumbing (its
  output is the content), so its source is hidden or removed.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``); where they are
missing and apt can install them (as root) the test does so, else it is skipped and says why.
``GDW_REQUIRE_BROWSER=1`` (set by CI) turns that skip into a failure.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

from gdwlib.book import BODY_PX, COLUMN_PX

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = {"book/intro": "intro", "book/experiments/16-summary": "summary",
               "book/experiments/10-table2-uniform-noise": "table2", "book/experiments/14-figures": "figures",
               "book/experiments/15-report": "report"}
BOOK_SOURCES = ["_config.yml", "_toc.yml", "book", "notebooks"]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "notebooks").glob("1[0-9]-*.ipynb"))   # as the Makefile lists them


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


def unavailable(why: str):
    if os.environ.get("GDW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test must run here (GDW_REQUIRE_BROWSER=1), but {why}")
    pytest.skip(why)


def chromium_paths() -> tuple[str, str]:
    """Chromium and chromedriver, installed through apt first where they are missing and can be."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], env=env,
                       capture_output=True, timeout=900)
        found = shutil.which("chromium"), shutil.which("chromedriver")
        if all(found):
            return found
    unavailable("Chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)")


def build_smoke_book(where: Path) -> Path:
    """The repository's book, its experiments run with the smoke profile, built under ``where``."""
    for name in BOOK_SOURCES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, where / name)
    shutil.rmtree(where / "book" / "experiments", ignore_errors=True)
    (where / "book" / "experiments").mkdir()
    results = where / "results"
    python = sys.executable
    subprocess.run([python, "-m", "gdwlib", "sweep", "--profile", "smoke", "--results-dir", str(results),
                    "--workers", "2", "--device", "cpu"], check=True, cwd=ROOT, capture_output=True)
    papermill = Path(python).with_name("papermill")
    for name in EXPERIMENTS:
        subprocess.run([str(papermill), "--no-progress-bar", str(ROOT / "notebooks" / f"{name}.ipynb"),
                        str(where / "book" / "experiments" / f"{name}.ipynb"), "-p", "profile", "smoke",
                        "-p", "results_dir", str(results), "-p", "device", "cpu", "--cwd", str(ROOT)],
                       check=True, capture_output=True)
    subprocess.run([python, "-m", "gdwlib.book", *map(str, (where / "book" / "experiments").glob("*.ipynb"))],
                   check=True)
    build = subprocess.run([str(Path(python).with_name("jupyter-book")), "build", str(where), "--warningiserror",
                            "--keep-going"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return where / "_build" / "html"


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    given = os.environ.get("GDW_BOOK_HTML")
    if given:
        html = Path(given).resolve()
        if not (html / "index.html").exists():
            pytest.fail(f"GDW_BOOK_HTML={given} holds no built book (index.html); build it with make book")
        return html
    chromium_paths()   # skip before spending minutes on a build nobody can look at
    return build_smoke_book(tmp_path_factory.mktemp("book"))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(book):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(book)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(90)   # PAGE_STATE waits up to 60 s for MathJax to start
    yield driver
    driver.quit()


# What the page shows once MathJax has typeset it, read in the browser.
PAGE_STATE = """
const done = arguments[arguments.length - 1];
// A page that loads MathJax may not have run it yet (the script is deferred, and slow on a loaded
// machine): wait for its start-up promise to exist, then for it to settle.
const loadsMathJax = !!document.querySelector('script[src*="mathjax" i], script[src*="tex-" i]');
const began = Date.now();
const mathJax = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
const whenReady = () => mathJax() ? mathJax() : (!loadsMathJax || Date.now() - began > 60000) ? Promise.resolve()
    : new Promise(r => setTimeout(r, 100)).then(whenReady);
// and for every image to finish loading or fail (a loaded machine serves them late)
const imagesSettled = () => Promise.all([...document.images].map(i => i.complete ? null
    : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
whenReady().then(imagesSettled).then(() => {
  const text = [...document.querySelectorAll('article')].map(a => {
    const copy = a.cloneNode(true);
    copy.querySelectorAll('pre, code, mjx-container, script, style, .cell_input, .MathJax_Preview')
        .forEach(e => e.remove());
    return copy.innerText;
  }).join('\\n');
  done({
    text: text,
    mathBlocks: document.querySelectorAll('article .math').length,
    rendered: document.querySelectorAll('article mjx-container').length,
    unrendered: [...document.querySelectorAll('article .math')].filter(m => !m.querySelector('mjx-container'))
                    .map(m => m.textContent.slice(0, 60)),
    images: [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    resources: performance.getEntriesByType('resource').map(r => r.name),
    download: [...document.querySelectorAll('a.btn-download-source-button, .btn-download-source-button')]
                  .map(a => a.getAttribute('href')).filter(h => h),
  });
}).catch(e => done({error: String(e)}));
"""
# TeX delimiters, any macro (two letters or more), and $...$ around a superscript, subscript,
# brace or backslash.
TEX = re.compile(r"\\[()[\]]|\$\$|\\[A-Za-z]{2,}|\$[^$\n]*[\\^_{}][^$\n]*\$")
ROLES = "meth|func|class|mod|attr|obj|data|exc|ref|doc|eq|numref|math|term|download|cite(?::[pt])?"
ROLE = re.compile(rf"\{{(?:py:)?(?:{ROLES})\}}|(?<![\w:]):(?:py:)?(?:{ROLES}):")

# The page's layout once every "Show code cell source" is open. An element is named by its tag,
# classes, the heading of its section and the start of its text.
LAYOUT = """
const done = arguments[arguments.length - 1];
const article = document.querySelector('article.bd-article');
const name = e => {
  const section = e.closest('section');
  const heading = section && section.querySelector('h1, h2, h3');
  const title = heading ? heading.innerText.replace('#', '').trim().replace(/\\s+/g, ' ') : '';
  const text = (e.innerText || e.getAttribute('src') || '').trim().replace(/\\s+/g, ' ').slice(0, 70);
  const hidden = e.closest('details') ? ' (hidden source, shown by "Show code cell source")' : '';
  return `<${e.tagName.toLowerCase()}${[...e.classList].map(c => '.' + c).join('')}>${hidden} under "${title}": `
         + `"${text}"`;
};
const inlineMath = e => !!e.closest('span.math, mjx-container');   // glyph boxes overhang by design
const clips = e => getComputedStyle(e).overflowX !== 'visible';
const free = e => {   // no ancestor in the article clips it: what sticks out is seen sticking out
  for (let a = e.parentElement; a && a !== article; a = a.parentElement) if (clips(a)) return false;
  return true;
};
function overflow(box) {
  const all = [...article.querySelectorAll('*')];
  const clipped = all.filter(e => !inlineMath(e) && clips(e) && e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
      .map(e => `${name(e)}: content ${e.scrollWidth} px wide in a box of ${e.clientWidth} px`);
  const outside = e => { const r = e.getBoundingClientRect();
                         return r.width > 0 && (r.right > box.right + 1 || r.left < box.left - 1); };
  const sticking = all.filter(e => outside(e) && free(e) && (e.parentElement === article || !outside(e.parentElement)))
      .map(e => { const r = e.getBoundingClientRect();
                  return `${name(e)}: from ${Math.round(r.left)} to ${Math.round(r.right)} px, the article `
                         + `from ${Math.round(box.left)} to ${Math.round(box.right)} px`; });
  const wideMath = [...article.querySelectorAll('div.math')].filter(d => {
      const m = d.querySelector('mjx-math'); return m && m.getBoundingClientRect().width > d.clientWidth + 1; })
      .map(d => `${name(d)}: formula wider than its ${d.clientWidth} px`);
  const page = document.documentElement;
  const sideways = page.scrollWidth > page.clientWidth + 1
      ? [`the page scrolls sideways: ${page.scrollWidth} px of content in a ${page.clientWidth} px window`] : [];
  return [...clipped, ...sticking, ...wideMath, ...sideways];
}
if (!article) {
  done({error: 'no article on the page'});
} else {
  article.querySelectorAll('details').forEach(d => d.open = true);
  document.fonts.ready.then(() => done({   // measured in the fonts the reader gets
    overflow: overflow(article.getBoundingClientRect()),
    images: [...article.querySelectorAll('img')].filter(i => i.naturalWidth > 0)
        .map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth, shown: i.getBoundingClientRect().width})),
    body: parseFloat(getComputedStyle(article.querySelector('p') || article).fontSize),
    outputs: [...article.querySelectorAll('.cell_output')].map(o => o.clientWidth).filter(w => w > 0),
    shownCode: [...article.querySelectorAll('.cell_input')].filter(c => !c.closest('details'))
        .map(c => ({name: name(c), code: c.innerText})),
    tables: [...article.querySelectorAll('table')].map(t => ({
        name: name(t),
        first: [...t.querySelectorAll('tbody tr')].map(r => r.cells[0] ? r.cells[0].innerText.trim() : ''),
    })),
  }));
}
"""
# A PNG shown at this share of its pixel width or more keeps its text within 10% of the size the
# plotting code drew (and tests); the browser shrinks a wider PNG to the column, text and all.
MIN_IMAGE_SCALE = 0.9


def page_url(server: str, page: str) -> str:
    return urljoin(server, page + ".html")


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_for_a_reader(book, server, browser, page):
    browser.get(page_url(server, page))
    state = browser.execute_async_script(PAGE_STATE)
    assert "error" not in state, state.get("error")
    assert not state["unrendered"], f"math not typeset by MathJax: {state['unrendered'][:3]}"
    if state["mathBlocks"]:
        assert state["rendered"] >= state["mathBlocks"]
    bad = [i["src"] for i in state["images"] if not i["ok"]]
    assert not bad, f"images that did not load: {bad}"
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"errors in the browser console: {errors}"
    host = urlparse(server).netloc
    foreign = [r for r in state["resources"] if urlparse(r).netloc not in (host, "")]
    assert not foreign, f"resources from outside the book: {foreign}"
    here = page_url(server, page)
    for href in state["links"]:
        target = urlparse(urljoin(here, href))
        if target.netloc != host or target.scheme not in ("http", "https"):
            continue
        path = book / target.path.lstrip("/")
        assert path.exists() or (path / "index.html").exists(), f"link {href!r} leads nowhere ({path})"
    for word in ("NBVAL", "injected-parameters", 'profile = "'):
        assert word not in state["text"], f"plumbing on the page: {word!r}"
    if (ROOT / (page + ".ipynb")).exists():
        assert state["download"], "no download button for the page's notebook"
        assert any((book / urlparse(urljoin(here, h)).path.lstrip("/")).exists() for h in state["download"])
    if page in SCREENSHOTS:
        shots = book.parent / "screenshots"
        shots.mkdir(exist_ok=True)
        browser.save_screenshot(str(shots / f"{SCREENSHOTS[page]}.png"))


@pytest.fixture(scope="module")
def reader_views(server, browser):
    """Each page's text (:data:`PAGE_STATE`) and layout (:data:`LAYOUT`), read once per page."""
    cache = {}

    def view(page: str) -> dict:
        if page not in cache:
            browser.get(page_url(server, page))
            state = browser.execute_async_script(PAGE_STATE)
            assert "error" not in state, state.get("error")
            layout = browser.execute_async_script(LAYOUT)
            assert "error" not in layout, f"{page}: {layout.get('error')}"
            cache[page] = {**state, **layout}
            browser.get_log("browser")   # test_page_renders_for_a_reader reads the console, page by page
        return cache[page]
    return view


@pytest.mark.parametrize("page", toc_pages())
def test_everything_fits_the_page(reader_views, page):
    overflow = reader_views(page)["overflow"]
    assert not overflow, f"{page}: {len(overflow)} element(s) cut off or outside the column:\n" + "\n".join(overflow)


@pytest.mark.parametrize("page", toc_pages())
def test_no_tex_or_role_source_in_the_text(reader_views, page):
    text = reader_views(page)["text"]
    found = [f"...{text[max(m.start() - 30, 0):m.end() + 30]}..." for rule in (TEX, ROLE) for m in rule.finditer(text)]
    assert not found, f"{page}: TeX or role source in the text:\n" + "\n".join(found)


@pytest.mark.parametrize("page", toc_pages())
def test_figures_are_shown_at_their_own_size(reader_views, page):
    view = reader_views(page)
    assert view["body"] == BODY_PX, f"{page}: body text {view['body']} px; gdwlib.book.BODY_PX says {BODY_PX}"
    narrow = [w for w in view["outputs"] if w < COLUMN_PX]
    assert not narrow, f"{page}: output areas {narrow} px wide, less than gdwlib.book.COLUMN_PX = {COLUMN_PX}"
    shrunk = [f"{i['src']}: {i['natural']} px shown at {i['shown']:.0f} px ({i['shown'] / i['natural']:.0%}), "
              f"its text shrunk as much; draw it at most {COLUMN_PX} px wide"
              for i in view["images"] if i["shown"] < MIN_IMAGE_SCALE * i["natural"]]
    assert not shrunk, f"{page}: figures shrunk by the browser:\n" + "\n".join(shrunk)


@pytest.mark.parametrize("page", toc_pages())
def test_no_table_opens_with_row_numbers(reader_views, page):
    numbered = [t["name"] for t in reader_views(page)["tables"]
                if t["first"] and t["first"] == [str(i) for i in range(len(t["first"]))]]
    assert not numbered, (f"{page}: tables whose first column is 0..N-1 (a pandas index; hide it or index by "
                          f"a column that names the rows):\n" + "\n".join(numbered))


@pytest.mark.parametrize("page", toc_pages())
def test_no_display_plumbing_shown(reader_views, page):
    shown = [c["name"] for c in reader_views(page)["shownCode"] if re.search(r"\bIPython\b", c["code"])]
    assert not shown, (f"{page}: code cells shown that only display the page's content (IPython.display); "
                       f"tag them hide-input or remove-input:\n" + "\n".join(shown))


def test_the_references_are_listed_as_the_text_cites_them(reader_views):
    labels = re.findall(r"^\[([^\]\n]+)\]", reader_views("book/references")["text"], re.M)
    assert labels, "no labelled entry on the references page"
    odd = [label for label in labels if not re.fullmatch(r"\S.*, (\d{4}[a-z]?|n\.d\.)", label)]
    assert not odd, (f"references labelled otherwise than the text's author-year citations: {odd} "
                     "(bibtex_default_style in _config.yml should be gdwlib.book.BIB_STYLE)")
