"""BibTeX for the book: every paper in its scope, each chapter, and the book itself.

The papers in scope are listed in ``book/catalogue.yaml``; a paper that has a chapter is
described by its own ``papers/<slug>/paper.yaml``, which overrides its catalogue entry. The book's
own title, authors and address come from ``CITATION.cff`` at the project root.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .yamlfile import load_yaml

logger = logging.getLogger(__name__)

CATALOGUE = Path("book") / "catalogue.yaml"
REFERENCES = Path("book") / "references.bib"
BOOK_BIB = Path("book") / "_generated" / "reprobook.bib"
CITATION_FILE = "CITATION.cff"
CATALOGUE_FIELDS = ("slug", "title", "authors", "year", "venue", "arxiv", "topic", "bibtex_key")
BOOK_KEY = "reprobook"

# Venue words that mark a journal; any other venue that is not an arXiv preprint is a proceedings.
JOURNAL_WORDS = ("journal", "jmlr", "transactions", "medical image analysis")
LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "$": r"\$"}
KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_:-]*$")


class BibliographyError(ValueError):
    """The catalogue or ``CITATION.cff`` is missing or has an invalid entry."""


def load_catalogue(root: Path) -> dict[str, dict[str, Any]]:
    """Read ``book/catalogue.yaml`` and return its entries by slug.

    Raises
    ------
    BibliographyError
        When the file is missing, an entry lacks a field, or a slug or BibTeX key repeats.
    """
    path = root / CATALOGUE
    data = load_yaml(path, BibliographyError, "it lists every paper in the book's scope")
    entries = data.get("papers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BibliographyError(f"{path} must contain a mapping with a 'papers' list")
    catalogue: dict[str, dict[str, Any]] = {}
    keys: set[str] = set()
    for i, entry in enumerate(entries):
        missing = [name for name in CATALOGUE_FIELDS if not isinstance(entry, dict) or name not in entry]
        if missing:
            raise BibliographyError(f"{path}: papers[{i}] is missing {', '.join(missing)}")
        slug, key = str(entry["slug"]), str(entry["bibtex_key"])
        if slug in catalogue:
            raise BibliographyError(f"{path}: papers[{i}] repeats the slug {slug!r}")
        if key in keys or not KEY_PATTERN.match(key):
            raise BibliographyError(f"{path}: papers[{i}] has a repeated or invalid bibtex_key {key!r}")
        keys.add(key)
        catalogue[slug] = dict(entry)
    return catalogue


def scope_entries(root: Path, metas: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return every paper in scope by slug: the catalogue entry updated by the chapter's ``paper.yaml``.

    Parameters
    ----------
    root : Path
        The project root.
    metas : mapping
        Raw ``paper.yaml`` contents by slug, as :func:`reprobook.book.paper_metas` returns them.
        A chapter missing from the catalogue is added, so the book cites every chapter.
    """
    entries = load_catalogue(root)
    for slug, meta in metas.items():
        merged = dict(entries.get(slug, {}))
        for name in (*CATALOGUE_FIELDS, "code"):
            if meta.get(name) not in (None, "", []):
                merged[name] = meta[name]
        merged.setdefault("bibtex_key", slug.replace("-", "_"))
        entries[slug] = merged
    return dict(sorted(entries.items()))


def escape(text: Any) -> str:
    """Return ``text`` with the characters that LaTeX treats as commands escaped."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in " ".join(str(text).split()))


def entry_type(venue: str) -> str:
    """Return the BibTeX entry type for a venue string: ``misc``, ``article`` or ``inproceedings``."""
    lowered = venue.lower()
    if not lowered or lowered.startswith("arxiv"):
        return "misc"
    if any(word in lowered for word in JOURNAL_WORDS):
        return "article"
    return "inproceedings"


def format_entry(kind: str, key: str, fields: Iterable[tuple[str, str]]) -> str:
    """Return one BibTeX entry; each field value is written in braces exactly as given."""
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{key},\n{body}\n}}\n"


def paper_bibtex(meta: Mapping[str, Any]) -> str:
    """Return the BibTeX entry of a paper from its catalogue entry or ``paper.yaml``.

    The title is wrapped in a second pair of braces so that styles keep its capitals. The arXiv
    id is given as ``eprint`` with ``archivePrefix`` for every entry type.
    """
    venue = str(meta.get("venue") or "")
    kind = entry_type(venue)
    fields = [
        ("author", " and ".join(escape(name) for name in meta.get("authors") or [])),
        ("title", "{" + escape(meta["title"]) + "}"),
        ("year", str(meta.get("year", ""))),
    ]
    if kind == "article":
        fields.append(("journal", escape(venue)))
    elif kind == "inproceedings":
        fields.append(("booktitle", escape(venue)))
    elif venue and venue.lower() != "arxiv preprint":
        fields.append(("note", escape(venue)))
    arxiv = str(meta.get("arxiv") or "")
    if arxiv:
        fields += [("eprint", arxiv), ("archivePrefix", "arXiv"), ("url", f"https://arxiv.org/abs/{arxiv}")]
    return format_entry(kind, str(meta["bibtex_key"]), fields)


def references_text(entries: Mapping[str, Mapping[str, Any]]) -> str:
    """Return ``references.bib``: one entry per paper in scope, in slug order."""
    header = "% Generated by `reprobook toc` from book/catalogue.yaml and papers/*/paper.yaml; edit those.\n"
    return header + "\n".join(paper_bibtex(meta) for meta in entries.values())


def load_citation(root: Path) -> dict[str, Any]:
    """Read ``CITATION.cff``: the book's title, authors, address and release.

    Raises
    ------
    BibliographyError
        When the file is missing or lacks ``title``, ``authors`` or ``url``.
    """
    path = root / CITATION_FILE
    data = load_yaml(path, BibliographyError, "create it at the project root with the book's citation")
    missing = [name for name in ("title", "authors", "url") if not isinstance(data, dict) or not data.get(name)]
    if missing:
        raise BibliographyError(f"{path}: missing {', '.join(missing)}")
    return data


def cff_author_names(citation: Mapping[str, Any]) -> list[str]:
    """Return the authors of ``CITATION.cff`` as BibTeX names; an entity (``name``) is braced whole."""
    names = []
    for author in citation["authors"]:
        if "name" in author:
            names.append("{" + escape(author["name"]) + "}")
        else:
            names.append(escape(f"{author.get('given-names', '')} {author.get('family-names', '')}".strip()))
    return names


def site_url(citation: Mapping[str, Any]) -> str:
    """Return the published book's address with a trailing slash."""
    return str(citation["url"]).rstrip("/") + "/"


def chapter_url(citation: Mapping[str, Any], slug: str) -> str:
    """Return the stable address of a chapter: the page path follows ``book/papers/<slug>.ipynb``."""
    return f"{site_url(citation)}book/papers/{slug}.html"


def release_year(citation: Mapping[str, Any]) -> str:
    """Return the year of ``date-released``, or an empty string when the file gives none."""
    released = citation.get("date-released")
    return str(released)[:4] if released else ""


def book_bibtex(citation: Mapping[str, Any]) -> str:
    """Return the BibTeX entry of the whole book (key ``reprobook``)."""
    fields = [
        ("author", " and ".join(cff_author_names(citation))),
        ("title", "{" + escape(citation["title"]) + "}"),
        ("year", release_year(citation)),
        ("url", site_url(citation)),
    ]
    if citation.get("version"):
        fields.append(("note", f"Version {escape(citation['version'])}"))
    return format_entry("misc", BOOK_KEY, [(name, value) for name, value in fields if value])


def chapter_bibtex(meta: Mapping[str, Any], citation: Mapping[str, Any]) -> str:
    """Return the BibTeX entry of a reproduction chapter, keyed ``reprobook:<slug>``."""
    slug = str(meta["slug"])
    fields = [
        ("author", " and ".join(cff_author_names(citation))),
        ("title", "{Reproduction of: " + escape(meta["title"]) + "}"),
        ("year", release_year(citation)),
        ("howpublished", "Chapter of " + escape(citation["title"])),
        ("url", chapter_url(citation, slug)),
    ]
    if meta.get("bibtex_key"):
        fields.append(("note", f"Reproduces the claims of {escape(meta['bibtex_key'])}"))
    return format_entry("misc", f"{BOOK_KEY}:{slug}", [(name, value) for name, value in fields if value])
