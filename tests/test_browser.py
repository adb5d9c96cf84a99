"""The built book as a reader's browser shows it: headless Chromium, served from localhost only.

The book is the one at ``$GDW_BOOK_HTML`` (``make browser-test`` sets it to ``_build/html``), or
else a book built here from the repository's sources with the ``smoke`` profile (a few minutes).
Every page of ``_toc.yml`` is opened and checked: no TeX source left in its text, MathJax's
output wherever there is math, every image loaded, no error in the browser console, every
internal link leading to a page that exists, no resource fetched from anywhere but the book's
own server, and, on a notebook's page, a download button for the notebook. Screenshots of the
pages readers open first go to ``<book>/../screenshots/`` (``_build/screenshots/``).

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
whenReady().then(() => {
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
TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(mathbf|frac|sum|omega|theta|nabla|partial|hat)\b")


def page_url(server: str, page: str) -> str:
    return urljoin(server, page + ".html")


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_for_a_reader(book, server, browser, page):
    browser.get(page_url(server, page))
    state = browser.execute_async_script(PAGE_STATE)
    assert "error" not in state, state.get("error")
    assert not TEX.search(state["text"]), f"TeX source in the text: ...{TEX.search(state['text']).group(0)}..."
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
