"""The runner end to end on scaffolded papers: outputs, validation, failures, the cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from reprobook.scaffold import scaffold
from reprobook.stats import VERDICTS

from .conftest import cli, copy_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("runner"), papers=[])
    scaffold(root, "good-paper", topic="testing")
    scaffold(root, "bad-paper", topic="testing")
    path = root / "papers" / "bad-paper" / "bad-paper.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[4].source += "\nraise RuntimeError('deliberate failure in the experiment')"
    nbformat.write(nb, path)
    return root


def git_like_snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_writes_notebook_and_claims(project, tmp_path):
    folder = project / "papers" / "good-paper"
    before = git_like_snapshot(folder)
    result = cli(project, "run", "good-paper", "--profile", "ci", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    claims = json.loads((tmp_path / "good-paper.claims.json").read_text())
    assert [c["claim"] for c in claims] == ["C1"]
    for field in ("claim", "verdict", "value", "paper_value", "rule"):
        assert field in claims[0]
    assert claims[0]["verdict"] == "reproduced"
    executed = nbformat.read(tmp_path / "good-paper.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert git_like_snapshot(folder) == before, "the run wrote into the paper's folder"


def test_unknown_parameter_fails_before_execution(project, tmp_path):
    start = time.monotonic()
    result = cli(project, "run", "good-paper", "--profile", "ci", "-p", "sed=1", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown parameter 'sed'" in result.stderr
    assert "Did you mean 'seed'?" in result.stderr
    assert "n_seeds: int = 8" in result.stderr
    assert not (tmp_path / "good-paper.ipynb").exists()
    assert time.monotonic() - start < 20


def test_wrong_type_names_value_and_type(project, tmp_path):
    result = cli(project, "run", "good-paper", "-p", "seed=abc", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert "'abc'" in result.stderr
    assert "int" in result.stderr


def test_unknown_profile_and_paper(project, tmp_path):
    assert "unknown profile 'huge'" in cli(project, "run", "good-paper", "--profile", "huge").stderr
    assert "known papers: bad-paper, good-paper" in cli(project, "run", "nope").stderr


def test_failing_notebook_reports_error(project, tmp_path):
    result = cli(project, "run", "bad-paper", "--profile", "ci", "--output-dir", str(tmp_path))
    assert result.returncode == 1
    assert "bad-paper: cell 4 (`def run(rng, momentum):`) raised RuntimeError: deliberate failure" in result.stdout
    claims = json.loads((tmp_path / "bad-paper.claims.json").read_text())
    assert [c["verdict"] for c in claims] == ["error"]
    executed = nbformat.read(tmp_path / "bad-paper.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", []))


def test_build_isolates_failure_and_never_caches_it(project):
    first = cli(project, "build", "--profile", "ci", "--jobs", "2")
    assert first.returncode == 1
    report = json.loads((project / "_build" / "reprobook" / "build-report.json").read_text())
    status = {p["slug"]: p["status"] for p in report["papers"]}
    assert status == {"bad-paper": "failed", "good-paper": "cached"}
    assert report["render_status"] == 0, (project / "_build" / "reprobook" / "render.log").read_text()[-3000:]
    page = (project / "_build" / "html" / "book" / "papers" / "bad-paper.html").read_text()
    assert "This run failed" in page
    assert "deliberate failure" in page

    second = cli(project, "build", "--profile", "ci", "--no-render")
    assert second.returncode == 1
    report = json.loads((project / "_build" / "reprobook" / "build-report.json").read_text())
    assert {p["slug"]: p["status"] for p in report["papers"]} == {"bad-paper": "failed", "good-paper": "cached"}

    claims = json.loads(cli(project, "claims", "--json").stdout)
    verdicts = {(c["paper"], c["claim"]): c["verdict"] for c in claims}
    assert verdicts == {("bad-paper", "C1"): "error", ("good-paper", "C1"): "reproduced"}
    assert all(c["verdict"] in VERDICTS for c in claims)


def test_check_and_list(project):
    result = cli(project, "check")
    assert result.returncode == 0, result.stdout
    listing = cli(project, "list").stdout
    assert "good-paper" in listing
    assert "testing" in listing


def test_new_rejects_bad_slug(project):
    result = cli(project, "new", "Bad_Slug")
    assert result.returncode == 2
    assert "lower-case" in result.stderr
