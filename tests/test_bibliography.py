"""BibTeX, the scope index, the citation files, the generated reader pages and the Pages workflow."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pybtex.database
import pytest
import yaml

from reprobook import bibliography
from reprobook.book import paper_metas, reader_markdown, write_references
from reprobook.dashboard import counts_figure_png, dashboard_markdown, scope_markdown
from reprobook.sphinx_ext import rewrite_launch_urls, source_notebook_path

from .conftest import PAPERS, ROOT, cli, copy_project

SCOPE_SIZE = 61


def test_catalogue_lists_whole_scope():
    catalogue = bibliography.load_catalogue(ROOT)
    assert len(catalogue) == SCOPE_SIZE
    for slug, entry in catalogue.items():
        assert entry["authors"], slug
        assert str(entry["arxiv"]).strip(), slug
        assert isinstance(entry["year"], int), slug


def test_every_chapter_is_in_catalogue():
    catalogue = bibliography.load_catalogue(ROOT)
    assert set(PAPERS) <= set(catalogue)


def test_catalogue_rejects_repeated_key(tmp_path):
    (tmp_path / "book").mkdir()
    entry = {name: "x" for name in bibliography.CATALOGUE_FIELDS}
    entry["authors"] = ["A B"]
    other = dict(entry, slug="y")
    (tmp_path / "book" / "catalogue.yaml").write_text(yaml.safe_dump({"papers": [entry, other]}))
    with pytest.raises(bibliography.BibliographyError, match="repeated or invalid bibtex_key"):
        bibliography.load_catalogue(tmp_path)


def test_references_bib_is_current():
    expected = bibliography.references_text(bibliography.scope_entries(ROOT, paper_metas(ROOT)))
    assert (ROOT / "book" / "references.bib").read_text() == expected, "run `reprobook toc` and commit it"


def test_references_bib_parses_with_arxiv_ids():
    data = pybtex.database.parse_file(str(ROOT / "book" / "references.bib"))
    assert len(data.entries) >= SCOPE_SIZE
    for key, entry in data.entries.items():
        assert entry.fields["eprint"], key
        assert entry.fields["url"] == f"https://arxiv.org/abs/{entry.fields['eprint']}"
        assert entry.persons["author"], key


@pytest.mark.parametrize(
    ("venue", "kind"),
    [
        ("arXiv preprint", "misc"),
        ("ICLR 2024 (spotlight)", "inproceedings"),
        ("Journal of Machine Learning Research 24(110), 2023", "article"),
        ("IEEE Transactions on Neural Networks and Learning Systems, 31(11), 2020", "article"),
        ("", "misc"),
    ],
)
def test_entry_type_from_venue(venue, kind):
    assert bibliography.entry_type(venue) == kind


def test_paper_bibtex_escapes_latex():
    meta = {"bibtex_key": "doe2024a", "title": "Fast & 100% right_now", "authors": ["Jane Doe"], "year": 2024}
    meta.update(venue="ICML 2024", arxiv="2401.00001")
    entry = pybtex.database.parse_string(bibliography.paper_bibtex(meta), "bibtex").entries["doe2024a"]
    assert entry.fields["title"] == r"{Fast \& 100\% right\_now}"
    assert entry.fields["booktitle"] == "ICML 2024"
    assert entry.fields["eprint"] == "2401.00001"


def test_scope_entries_prefer_paper_yaml(tmp_path):
    root = copy_project(tmp_path, papers=[])
    catalogue = bibliography.load_catalogue(root)
    slug = next(iter(catalogue))
    metas = {
        slug: {"slug": slug, "title": "Corrected title", "venue": "", "bibtex_key": catalogue[slug]["bibtex_key"]},
        "new-paper": {"slug": "new-paper", "title": "New", "authors": ["A B"], "year": 2025, "arxiv": "2501.1"},
    }
    entries = bibliography.scope_entries(root, metas)
    assert entries[slug]["title"] == "Corrected title"
    assert entries[slug]["venue"] == catalogue[slug]["venue"], "an empty field keeps the catalogue's value"
    assert entries["new-paper"]["bibtex_key"] == "new_paper"
    assert len(entries) == SCOPE_SIZE + 1


def test_citation_addresses_match_config():
    citation = bibliography.load_citation(ROOT)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["message"]
    assert bibliography.site_url(citation) == config["html"]["baseurl"]
    assert citation["repository-code"] == config["repository"]["url"]
    assert "book/references.bib" in config["bibtex_bibfiles"]


def test_chapter_bibtex_has_stable_address():
    citation = bibliography.load_citation(ROOT)
    meta = {"slug": "neural-tangent-kernel", "title": "Neural Tangent Kernel", "bibtex_key": "jacot2018ntk"}
    text = bibliography.chapter_bibtex(meta, citation)
    entry = pybtex.database.parse_string(text, "bibtex").entries["reprobook:neural-tangent-kernel"]
    assert entry.fields["url"] == citation["url"] + "book/papers/neural-tangent-kernel.html"
    assert "jacot2018ntk" in entry.fields["note"]


def test_write_references_in_scaffold(tmp_path):
    root = copy_project(tmp_path, papers=[])
    assert cli(root, "new", "demo-paper").returncode == 0
    references = (root / "book" / "references.bib").read_text()
    assert "@misc{demo_paper," in references or "@inproceedings{demo_paper," in references
    assert write_references(root, paper_metas(root)) is False, "a second write changes nothing"
    assert "@misc{reprobook," in (root / bibliography.BOOK_BIB).read_text()


def test_reader_block_of_scaffold(tmp_path):
    root = copy_project(tmp_path, papers=[])
    assert cli(root, "new", "demo-paper").returncode == 0
    text = reader_markdown(paper_metas(root)["demo-paper"])
    assert "{download}`source notebook </papers/demo-paper/demo-paper.ipynb>`" in text
    assert "{download}`executed notebook <demo-paper.ipynb>`" in text
    assert "::::{admonition} Cite this chapter" in text
    assert "@misc{reprobook:demo-paper," in text
    assert "book/papers/demo-paper.html#claim-C1" in text


RECORD = {
    "claim": "C1",
    "statement": "Momentum beats GD.",
    "verdict": "reproduced",
    "value": 0.5,
    "interval": [0.4, 0.6],
    "reported": "0.5 in Fig. 1",
    "source": "Fig. 1",
    "scale": "proxy",
}


def test_dashboard_rows_link_cards():
    metas = {"p": {"title": "Paper <P>", "topic": "optimization"}}
    text = dashboard_markdown(metas, {"p": [RECORD, dict(RECORD, claim="C2", verdict="error", value=None)]}, "f.png")
    assert text.count('href="../papers/p.html#claim-C1"') == 2
    assert 'data-verdict="error"' in text
    assert "Paper &lt;P&gt;" in text
    assert "```{figure} f.png" in text
    assert 'option value="Optimization"' in text


def test_dashboard_without_claims_has_no_figure():
    text = dashboard_markdown({}, {}, None)
    assert "{figure}" not in text
    assert "No claim has been recorded yet." in text


def test_counts_figure_is_deterministic_png():
    rows = [dict(RECORD, paper="p", title="P", topic="optimization"), dict(RECORD, verdict="partial", topic="nlp")]
    first = counts_figure_png(rows)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", first[16:24])
    assert width > 800
    assert height > 200
    assert counts_figure_png(rows) == first


def test_scope_page_marks_planned():
    entries = {
        "a": {"title": "A", "authors": ["X"], "year": 2020, "arxiv": "1", "topic": "nlp"},
        "b": {"title": "B", "authors": ["Y"], "year": 2021, "arxiv": "2", "topic": "nlp"},
    }
    text = scope_markdown(entries, ["a"], {"a": [RECORD]})
    assert '<tr id="paper-a" data-status="chapter"' in text
    assert '<tr id="paper-b" data-status="planned"' in text
    assert '<a href="../papers/a.html">chapter</a>' in text
    assert "reproduced</span>&nbsp;1" in text


def test_launch_links_point_at_source():
    assert source_notebook_path("book/papers/ntk") == "papers/ntk/ntk.ipynb"
    assert source_notebook_path("book/intro") is None
    buttons = [
        {"label": "launch-buttons", "buttons": [{"url": "https://binder/x?urlpath=tree/book/papers/ntk.ipynb"}]},
    ]
    assert rewrite_launch_urls(buttons, "book/papers/ntk.ipynb", "papers/ntk/ntk.ipynb") == 1
    assert buttons[0]["buttons"][0]["url"].endswith("tree/papers/ntk/ntk.ipynb")


def test_pages_workflow_is_valid():
    path = ROOT / ".github" / "workflows" / "pages.yml"
    workflow = yaml.safe_load(path.read_text())
    steps = workflow["jobs"]["build"]["steps"]
    assert any(step.get("run") == "make book" for step in steps)
    assert any(str(step.get("uses", "")).startswith("actions/cache") for step in steps)
    actionlint = shutil.which("actionlint") or shutil.which("actionlint", path=str(ROOT / ".venv" / "bin"))
    if actionlint is None:
        pytest.skip("actionlint is not installed; `make setup` installs it")
    result = subprocess.run([actionlint, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
