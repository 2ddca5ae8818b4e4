"""Every paper at its `ci` profile: claims file, stored summary, determinism."""

from __future__ import annotations

import json

import nbformat
import pytest

from reprobook.claims import load_paper_yaml
from reprobook.stats import VERDICTS

from .conftest import PAPERS, ROOT, cli

pytestmark = pytest.mark.slow

REFERENCES = ROOT / "tests" / "references"
SUMMARY_CELL = """\
import json
import os

claims = json.load(open(os.environ["REPROBOOK_CLAIMS_FILE"]))
for claim in claims:
    value = "-" if claim["value"] is None else format(claim["value"], ".3g")
    print(claim["claim"], claim["verdict"], value)
"""


@pytest.mark.parametrize("slug", PAPERS)
def test_paper_ci_claims(ci_runs, slug):
    result, out = ci_runs[slug]
    assert result.returncode == 0, result.stdout + result.stderr
    claims = json.loads((out / f"{slug}.claims.json").read_text())
    expected = [c["id"] for c in load_paper_yaml(ROOT / "papers" / slug / "paper.yaml")["claims"]]
    assert [c["claim"] for c in claims] == expected
    for claim in claims:
        assert claim["verdict"] in VERDICTS
        assert claim["verdict"] != "error", claim["detail"]
        for field in ("value", "paper_value", "rule", "detail", "scale"):
            assert field in claim


@pytest.mark.parametrize("slug", PAPERS)
def test_paper_ci_summary_regression(ci_runs, slug, nb_regression, monkeypatch):
    _, out = ci_runs[slug]
    reference = REFERENCES / f"{slug}.ipynb"
    if not reference.is_file():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(SUMMARY_CELL)]
        nbformat.write(nb, reference)
    monkeypatch.setenv("REPROBOOK_CLAIMS_FILE", str(out / f"{slug}.claims.json"))
    nb_regression.diff_ignore = ("/metadata/language_info", "/cells/*/execution_count", "/cells/*/metadata")
    nb_regression.exec_cwd = str(REFERENCES)
    nb_regression.check(str(reference))


def test_paper_runs_identically_twice(project, tmp_path):
    slug = "large-step-logistic-regression" if "large-step-logistic-regression" in PAPERS else PAPERS[0]
    outputs = []
    for name in ("first", "second"):
        result = cli(project, "run", slug, "--profile", "ci", "--force", "--output-dir", str(tmp_path / name))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{slug} [ci] executed" in result.stdout, "--force must execute, not take the cache"
        outputs.append(json.loads((tmp_path / name / f"{slug}.claims.json").read_text()))
    assert outputs[0] == outputs[1]
