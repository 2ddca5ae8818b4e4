"""The book: generated table of contents, a warning-free build, claim cards in the HTML."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from reprobook import book
from reprobook.book import toc_text
from reprobook.claims import load_paper_yaml

from .conftest import PAPERS, ROOT, cli, copy_project

pytestmark = pytest.mark.slow


def test_toc_is_current():
    assert (ROOT / "_toc.yml").read_text() == toc_text(ROOT), "run `reprobook toc` and commit _toc.yml"


def test_every_paper_passes_check():
    result = cli(ROOT, "check")
    assert result.returncode == 0, result.stdout


@pytest.fixture(scope="session")
def built(project: Path, ci_runs) -> Path:
    """Render the book at `ci` after the paper tests filled the cache."""
    result = cli(project, "build", "--profile", "ci", "--jobs", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


def test_build_renders_without_warnings(built):
    report = json.loads((built / "_build" / "reprobook" / "build-report.json").read_text())
    assert report["render_status"] == 0
    assert report["failed"] == 0
    assert (built / "_build" / "html" / "index.html").is_file()


def test_second_build_executes_nothing(built):
    result = cli(built, "build", "--profile", "ci", "--jobs", "2")
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((built / "_build" / "reprobook" / "build-report.json").read_text())
    assert report["counts"] == {"cached": len(PAPERS)}
    render_log = (built / "_build" / "reprobook" / "render.log").read_text()
    assert "Jupyter Book was not run" in render_log


def test_render_digest_follows_pages_and_sources(tmp_path):
    root = copy_project(tmp_path / "book", papers=[])
    before = book.render_inputs_digest(root)
    assert book.render_inputs_digest(root) == before
    (root / "book" / "intro.md").write_text((root / "book" / "intro.md").read_text() + "\nOne more line.\n")
    after_page = book.render_inputs_digest(root)
    assert after_page != before
    (root / "papers" / "new-paper").mkdir(parents=True)
    (root / "papers" / "new-paper" / "new-paper.ipynb").write_text("{}")
    assert book.render_inputs_digest(root) != after_page


@pytest.mark.parametrize("slug", PAPERS)
def test_chapter_shows_every_claim_card(built, slug):
    page = (built / "_build" / "html" / "book" / "papers" / f"{slug}.html").read_text()
    meta = load_paper_yaml(ROOT / "papers" / slug / "paper.yaml")
    for claim in meta["claims"]:
        assert f'id="claim-{claim["id"]}"' in page, f"no card for {claim['id']}"
    assert "Run it yourself" in page
    assert f"arxiv.org/abs/{meta['arxiv']}" in page
    assert "This run failed" not in page


def test_dashboard_lists_every_claim(built):
    page = (built / "_build" / "html" / "book" / "_generated" / "dashboard.html").read_text()
    for slug in PAPERS:
        for claim in load_paper_yaml(ROOT / "papers" / slug / "paper.yaml")["claims"]:
            assert f"../papers/{slug}.html#claim-{claim['id']}" in page


@pytest.mark.parametrize("slug", PAPERS)
def test_stored_notebook_has_no_outputs(slug):
    nb = nbformat.read(ROOT / "papers" / slug / f"{slug}.ipynb", as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs; clear them before committing"
            assert cell.execution_count is None, f"cell {index} has an execution count"
