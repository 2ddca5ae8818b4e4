"""The rendered book in headless Chromium: dashboard, a chapter, citation, search, links, offline.

A session fixture builds a copy of the project with one scaffolded paper at the `ci` profile,
serves `_build/html` from a local HTTP server on 127.0.0.1, and opens the pages with Playwright
driving the system Chromium. Any request that leaves 127.0.0.1 is blocked and recorded, so the
pages are checked to work offline. Screenshots are written to `_build/screenshots` of the project.
The link check reads the HTML files only and runs without a browser.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from .conftest import ROOT, cli, copy_project

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Console errors from the packages' own scripts, not from the book: Jupyter Book 1.0.4 includes
# sphinx-thebe's configuration script twice, and pydata-sphinx-theme 0.17 warns while a fresh
# browser profile has no stored light/dark mode.
THIRD_PARTY_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared", "Got invalid theme mode")
SCREENSHOTS = ROOT / "_build" / "screenshots"
SLUG = "demo-paper"

needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed; install it with `apt-get install chromium` (see README)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A built book with one scaffolded chapter; returns its `_build/html` folder."""
    root = copy_project(tmp_path_factory.mktemp("browser"), papers=[])
    created = cli(root, "new", SLUG, "--topic", "optimization")
    assert created.returncode == 0, created.stderr
    build = cli(root, "build", "--profile", "ci", "--jobs", "1")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return root / "_build" / "html"


@pytest.fixture(scope="module")
def base_url(site: Path):
    """The site served over HTTP on a free port of 127.0.0.1."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to standard error."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class names it `format`
        pass


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed; install it with `apt-get install chromium` (see README)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed; run `make setup`")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, base_url):
    """A fresh page that blocks every request leaving 127.0.0.1 and records it in `page.external`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.external = []
    page.console_errors = []

    def route(request_route) -> None:
        url = request_route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            request_route.continue_()
        else:
            page.external.append(url)
            request_route.abort()

    page.route("**/*", route)

    def record_error(text: str) -> None:
        if not text.startswith(THIRD_PARTY_ERRORS):
            page.console_errors.append(text)

    page.on("console", lambda message: message.type == "error" and record_error(message.text))
    page.on("pageerror", lambda error: record_error(str(error)))
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under the project's `_build/screenshots` and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def images_loaded(page) -> list[str]:
    """Return the sources of the page's images that did not load."""
    return page.eval_on_selector_all(
        "article img", "images => images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )


@needs_browser
def test_dashboard_filters_and_sorts(page, base_url):
    page.goto(base_url + "book/_generated/dashboard.html", wait_until="load")
    rows = page.locator("#rb-claims tbody tr")
    assert rows.count() == 1
    assert page.locator("#rb-claims tbody tr a[href$='#claim-C1']").count() == 2
    figure = page.locator("img[alt^='Bar charts of the number of claims']")
    assert figure.count() == 1
    assert images_loaded(page) == []
    assert page.locator(".rb-shown").inner_text() == "1 of 1 rows shown"

    page.fill(".rb-filter[data-table='rb-claims'] input[data-filter='text']", "no such claim")
    assert page.locator(".rb-shown").inner_text() == "0 of 1 rows shown"
    assert rows.first.is_hidden()
    page.fill(".rb-filter[data-table='rb-claims'] input[data-filter='text']", "")
    assert rows.first.is_visible()

    header = page.locator("#rb-claims th", has_text="Ours")
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    screenshot(page, "dashboard")
    assert page.external == []
    assert page.console_errors == []


@needs_browser
def test_scope_page_lists_planned_papers(page, base_url):
    page.goto(base_url + "book/_generated/papers.html", wait_until="load")
    rows = page.locator("#rb-scope tbody tr")
    assert rows.count() >= 62, "the 61 papers of the catalogue and the scaffolded chapter"
    page.select_option(".rb-filter[data-table='rb-scope'] select[data-filter='status']", "chapter")
    assert page.locator(".rb-filter[data-table='rb-scope'] .rb-shown").inner_text().startswith("1 of ")
    chapter_row = page.locator(f"#paper-{SLUG}")
    assert chapter_row.is_visible()
    assert chapter_row.locator(f"a[href='../papers/{SLUG}.html']").count() == 1
    assert chapter_row.locator(".rb-verdict").count() >= 1
    page.select_option(".rb-filter[data-table='rb-scope'] select[data-filter='status']", "planned")
    assert page.locator("#rb-scope tbody tr:visible .rb-planned").count() >= 61
    screenshot(page, "papers-in-scope")
    assert page.external == []


@needs_browser
def test_claim_anchor_lands_on_card(page, base_url):
    page.goto(base_url + f"book/papers/{SLUG}.html#claim-C1", wait_until="load")
    card = page.locator("#claim-C1")
    assert card.count() == 1
    page.wait_for_function("document.getElementById('claim-C1').getBoundingClientRect().top < innerHeight")
    top = card.evaluate("element => element.getBoundingClientRect().top")
    assert 0 <= top < 900, f"the card of C1 is {top}px from the top of the viewport"
    assert card.evaluate("element => element.matches(':target')")


@needs_browser
def test_chapter_shows_cards_figures_math(page, base_url):
    page.goto(base_url + f"book/papers/{SLUG}.html", wait_until="load")
    card = page.locator("#claim-C1")
    paper_box = card.locator(".rb-paper").bounding_box()
    ours_box = card.locator(".rb-ours").bounding_box()
    assert abs(paper_box["y"] - ours_box["y"]) < 2, "the paper's side and ours should share a row"
    assert ours_box["x"] > paper_box["x"] + paper_box["width"] - 1
    assert card.locator(".rb-verdict").count() == 1
    assert page.locator("table.rb-summary a[href='#claim-C1']").count() == 1

    assert page.locator("article img").count() >= 1
    assert images_loaded(page) == []
    page.wait_for_selector("mjx-container", timeout=15000)

    launch = page.eval_on_selector_all("a[href*='mybinder.org'], a[href*='colab']", "links => links.map(a => a.href)")
    assert len(launch) == 2
    for url in launch:
        assert url.endswith(f"papers/{SLUG}/{SLUG}.ipynb"), url
    screenshot(page, "chapter")
    assert page.external == []
    assert page.console_errors == []


@needs_browser
def test_chapter_citation_block(page, base_url):
    page.goto(base_url + f"book/papers/{SLUG}.html", wait_until="load")
    block = page.locator(".rb-cite")
    assert block.count() == 1
    bibtex = block.locator("pre")
    assert not bibtex.first.is_visible(), "the citation block starts collapsed"
    block.locator(".admonition-title").click()
    bibtex.first.wait_for(state="visible")
    text = block.inner_text()
    assert "@inproceedings{demo_paper" in text
    assert f"@misc{{reprobook:{SLUG}" in text
    assert f"https://reprobook.github.io/reprobook/book/papers/{SLUG}.html" in text
    block.scroll_into_view_if_needed()
    screenshot(page, "chapter-citation")


@needs_browser
def test_chapter_downloads_resolve(page, base_url):
    page.goto(base_url + f"book/papers/{SLUG}.html", wait_until="load")
    links = page.eval_on_selector_all("a.download, a[download]", "links => links.map(a => a.href)")
    notebooks = [url for url in links if url.endswith(".ipynb")]
    assert len(notebooks) >= 2, links
    for url in notebooks:
        response = page.request.get(url)
        assert response.status == 200, url
        assert response.json()["nbformat"] == 4


@needs_browser
def test_search_finds_chapter(page, base_url):
    page.goto(base_url + "search.html?q=momentum", wait_until="load")
    results = page.locator("#search-results li")
    results.first.wait_for(timeout=15000)
    assert page.locator(f"#search-results a[href*='book/papers/{SLUG}.html']").count() >= 1
    screenshot(page, "search")
    assert page.external == []


class LinkCollector(HTMLParser):
    """Collects the `id`s of a page and the targets of its `href` and `src` attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if not value:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name in ("href", "src"):
                self.targets.append(value)


def parse_page(path: Path) -> LinkCollector:
    collector = LinkCollector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


def test_internal_links_resolve(site):
    # Files under _static are the themes' template fragments, not pages of the book.
    pages = {path: parse_page(path) for path in site.rglob("*.html") if "_static" not in path.parts}
    broken = []
    checked = 0
    for path, collected in pages.items():
        for target in collected.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("mailto:", "javascript:", "data:")):
                continue
            file = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            checked += 1
            if not file.exists():
                broken.append(f"{path.relative_to(site)}: {target} (no file)")
                continue
            if parts.fragment and file.suffix == ".html":
                target_page = pages.get(file) or parse_page(file)
                if unquote(parts.fragment) not in target_page.ids:
                    broken.append(f"{path.relative_to(site)}: {target} (no such anchor)")
    assert checked > 100
    assert broken == []
