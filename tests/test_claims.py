"""Claims: paper.yaml validation, recording, cards, and claims a run never recorded."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from reprobook.claims import CLAIM_MIME, ClaimsError, Paper, card_html
from reprobook.project import PaperFolder
from reprobook.runner import collect_claims
from reprobook.scaffold import scaffold

from .conftest import copy_project


@pytest.fixture
def paper_folder(tmp_path: Path) -> Path:
    root = copy_project(tmp_path / "book", papers=[])
    return scaffold(root, "demo-paper")


def edit_yaml(folder: Path, change) -> None:
    path = folder / "paper.yaml"
    meta = yaml.safe_load(path.read_text())
    change(meta)
    path.write_text(yaml.safe_dump(meta))


def test_record_computes_verdict(paper_folder):
    paper = Paper.load(paper_folder)
    result = paper.record("C1", seed=[0, 1, 2, 3, 4], momentum_loss=[1, 1, 1, 1, 1], gd_loss=[2, 2, 2, 2, 2])
    assert result.verdict == "reproduced"
    assert paper.result("C1") is result


def test_record_unknown_claim_lists_ids(paper_folder):
    paper = Paper.load(paper_folder)
    with pytest.raises(ClaimsError, match="claim 'C9' is not in demo-paper/paper.yaml; its claims are C1"):
        paper.record("C9", seed=[0], momentum_loss=[1], gd_loss=[2])


def test_record_missing_column_named(paper_folder):
    paper = Paper.load(paper_folder)
    with pytest.raises(ClaimsError, match="'gd_loss' is required by the rule"):
        paper.record("C1", seed=[0, 1, 2], momentum_loss=[1, 1, 1])


def test_record_rejects_text_and_matrices(paper_folder):
    paper = Paper.load(paper_folder)
    with pytest.raises(ClaimsError, match="must be one-dimensional"):
        paper.record("C1", seed=[0, 1], momentum_loss=[[1, 2], [3, 4]], gd_loss=[1, 2])


def test_record_accepts_text_labels_held_as_objects(paper_folder):
    import pandas as pd

    paper = Paper.load(paper_folder)
    arms = pd.Series(["a", "b", "c", "d", "e"])  # pandas keeps strings as objects
    result = paper.record("C1", seed=[0, 1, 2, 3, 4], momentum_loss=[1] * 5, gd_loss=[2] * 5, arm=arms)
    assert result.verdict == "reproduced"
    with pytest.raises(ClaimsError, match="numeric, boolean or text labels"):
        paper.record("C1", seed=[0, 1], momentum_loss=[1, {"a": 1}], gd_loss=[2, 2])


def test_show_before_record_explains(paper_folder):
    with pytest.raises(ClaimsError, match="has not been recorded yet"):
        Paper.load(paper_folder).result("C1")


def test_unrecorded_claim_reads_error(paper_folder):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    claims = collect_claims(PaperFolder(paper_folder.parents[1], "demo-paper"), "ok", nbformat.writes(nb), None)
    assert claims[0]["verdict"] == "error"
    assert "without recording" in claims[0]["detail"]


def test_recorded_claim_read_back_from_outputs(paper_folder):
    record = {"claim": "C1", "verdict": "reproduced", "value": 1.0, "columns": {"seed": [0]}}
    cell = nbformat.v4.new_code_cell("paper.record(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={CLAIM_MIME: record, "text/plain": "C1"})]
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    claims = collect_claims(PaperFolder(paper_folder.parents[1], "demo-paper"), "ok", nbformat.writes(nb), None)
    assert claims[0]["verdict"] == "reproduced"
    assert "columns" not in claims[0]


def test_failed_run_gives_error_never_stale(paper_folder):
    record = {"claim": "C1", "verdict": "reproduced", "value": 1.0}
    cell = nbformat.v4.new_code_cell("paper.record(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={CLAIM_MIME: record})]
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    folder = PaperFolder(paper_folder.parents[1], "demo-paper")
    claims = collect_claims(folder, "failed", nbformat.writes(nb), "demo-paper: cell 3 raised ValueError: x")
    assert claims[0]["verdict"] == "error"
    assert claims[0]["detail"] == "demo-paper: cell 3 raised ValueError: x"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("bibtex_key"), "missing fields bibtex_key"),
        (lambda m: m["claims"][0].update(scale="huge"), "scale 'huge' must be one of"),
        (lambda m: m["claims"][0].pop("scale_note"), "needs a scale_note"),
        (lambda m: m["claims"][0].update(evidence="abstract"), "evidence must be a mapping"),
        (lambda m: m["claims"].append(dict(m["claims"][0])), "duplicate claim id 'C1'"),
        (lambda m: m["claims"][0]["rule"].update(kind="bigger"), "unknown rule kind 'bigger'"),
        (lambda m: m.update(slug="other"), "differs from the folder name"),
    ],
)
def test_invalid_paper_yaml_named(paper_folder, change, message):
    edit_yaml(paper_folder, change)
    with pytest.raises(ClaimsError, match=message):
        Paper.load(paper_folder)


def test_card_shows_paper_and_ours(paper_folder):
    paper = Paper.load(paper_folder)
    result = paper.record("C1", seed=[0, 1, 2, 3, 4], momentum_loss=[1] * 5, gd_loss=[2] * 5)
    html = card_html(result.to_dict())
    assert 'id="claim-C1"' in html
    assert "The paper" in html
    assert "This run" in html
    assert "No number from the paper was read" in html
    assert "over 5 seeds" in html
