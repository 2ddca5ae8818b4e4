"""The generated reader pages: the claims dashboard, its count figure and the book's scope page.

Both tables are plain HTML. ``book/_static/dashboard.js`` makes every table with the
``data-filterable`` attribute sortable by its column headers and filterable by the controls in
the ``rb-filter`` block before it, so the pages need no network.
"""

from __future__ import annotations

import html
import io
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .claims import format_value, verdict_badge
from .stats import SCALES, VERDICTS

logger = logging.getLogger(__name__)

FIGURE_NAME = "dashboard-counts.png"
TABLE_ID = "rb-claims"
SCOPE_TABLE_ID = "rb-scope"


def topic_title(topic: str) -> str:
    """Return the part caption of a topic slug (``deep-learning-theory`` -> ``Deep learning theory``)."""
    words = str(topic).replace("_", "-").split("-")
    return " ".join(words).capitalize()


def claim_rows(metas: Mapping[str, Mapping[str, Any]], claims: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """Return one flat row per claim: the claim record with the paper's slug, title and topic added."""
    rows = []
    for slug in sorted(claims):
        meta = metas.get(slug, {})
        for record in claims[slug]:
            row = dict(record)
            row.update(paper=slug, title=str(meta.get("title", slug)), topic=str(meta.get("topic", "other")))
            rows.append(row)
    return rows


def counts_figure_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Draw the claim counts per verdict, per topic and per scale with seaborn and return PNG bytes.

    The PNG carries no timestamp or software tag, so the same counts give the same bytes and an
    unchanged dashboard leaves Sphinx nothing to rebuild.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from .claims import VERDICT_COLOURS
    from .plotting import use_theme

    use_theme()
    frame = pd.DataFrame(
        {
            "verdict": [row["verdict"] for row in rows],
            "topic": [topic_title(row["topic"]) for row in rows],
            "scale": [str(row.get("scale") or "unknown") for row in rows],
        }
    )
    verdicts = [v for v in VERDICTS if v in set(frame["verdict"])]
    palette = {v: VERDICT_COLOURS[v] for v in verdicts}
    topics = sorted(set(frame["topic"]))
    scales = [s for s in SCALES if s in set(frame["scale"])] + sorted(set(frame["scale"]) - set(SCALES))
    height = max(2.6, 0.32 * max(len(verdicts), len(topics), len(scales)) + 1.4)
    fig, axes = plt.subplots(1, 3, figsize=(11.5, height), layout="constrained")
    sns.countplot(frame, y="verdict", order=verdicts, hue="verdict", palette=palette, legend=False, ax=axes[0])
    axes[0].set(title="Claims per verdict", xlabel="claims", ylabel="")
    for ax, column, order, title in ((axes[1], "topic", topics, "per topic"), (axes[2], "scale", scales, "per scale")):
        frame[column] = pd.Categorical(frame[column], categories=order)
        sns.histplot(
            frame,
            y=column,
            hue="verdict",
            hue_order=verdicts,
            palette=palette,
            multiple="stack",
            discrete=True,
            shrink=0.8,
            alpha=1.0,
            legend=ax is axes[2],
            ax=ax,
        )
        ax.set(title=f"Claims {title}", xlabel="claims", ylabel="")
    if axes[2].get_legend() is not None:
        sns.move_legend(axes[2], "upper left", bbox_to_anchor=(1.02, 1), title="verdict", frameon=False)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_bytes_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` unless the file already contains it; return True if written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def filter_controls(table_id: str, columns: Mapping[str, Sequence[str]], placeholder: str) -> str:
    """Return the search box and one drop-down per column that ``dashboard.js`` wires to a table."""
    esc = html.escape
    parts = [
        f'<div class="rb-filter" data-table="{table_id}">',
        f'<label>Search <input type="search" data-filter="text" placeholder="{esc(placeholder)}"></label>',
    ]
    for column, values in columns.items():
        options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
        parts.append(
            f'<label>{esc(column.capitalize())} <select data-filter="{esc(column)}">'
            f'<option value="">all</option>{options}</select></label>'
        )
    parts.append('<span class="rb-shown" aria-live="polite"></span></div>')
    return "".join(parts)


def sortable_header(labels: Sequence[tuple[str, str]]) -> str:
    """Return a table head whose cells hold sort buttons; ``kind`` is ``text`` or ``number``."""
    cells = "".join(
        f'<th data-sort="{kind}" aria-sort="none"><button type="button">{html.escape(label)}</button></th>'
        for label, kind in labels
    )
    return f"<thead><tr>{cells}</tr></thead>"


def count_badges(verdicts: Counter) -> str:
    """Return the verdict badges with their counts, in the order of :data:`VERDICTS`."""
    return " ".join(f"{verdict_badge(v)}&nbsp;{verdicts[v]}" for v in VERDICTS if verdicts.get(v))


def dashboard_markdown(
    metas: Mapping[str, Mapping[str, Any]], claims: Mapping[str, Sequence[Mapping]], figure: str | None
) -> str:
    """Return the claims dashboard page.

    Parameters
    ----------
    metas : mapping
        Raw ``paper.yaml`` contents by slug (title and topic are read).
    claims : mapping
        The claim records of each paper, as in ``claims.json``.
    figure : str or None
        File name of the count figure beside the page, or None when there is no claim to count.
    """
    rows = claim_rows(metas, claims)
    counts = Counter(row["verdict"] for row in rows)
    lines = [
        "# Claims dashboard",
        "",
        "Every claim of every chapter, with the paper's evidence, the value this build measured and the verdict "
        "of the claim's pre-registered rule (see {doc}`/book/method`). Click a column header to sort the table, "
        "or narrow it with the search box and the drop-downs; each claim links to its card in the chapter.",
        "",
    ]
    if figure:
        lines += [
            f"```{{figure}} {figure}",
            ":name: dashboard-counts",
            ":alt: Bar charts of the number of claims per verdict, per topic and per scale, coloured by verdict.",
            "",
            f"Claims per verdict, per topic and per scale in this build ({len(rows)} claims, {len(claims)} chapters).",
            "```",
            "",
        ]
    topics = sorted({topic_title(row["topic"]) for row in rows})
    scales = [s for s in SCALES if any(row.get("scale") == s for row in rows)]
    verdicts = [v for v in VERDICTS if counts.get(v)]
    lines += [
        "```{raw} html",
        '<p class="rb-counts">' + (count_badges(counts) or "No claim has been recorded yet.") + "</p>",
        filter_controls(TABLE_ID, {"verdict": verdicts, "topic": topics, "scale": scales}, "paper, claim or statement"),
        f'<table class="rb-dashboard" id="{TABLE_ID}" data-filterable>',
        sortable_header(
            [
                ("Paper", "text"),
                ("Claim", "text"),
                ("Statement", "text"),
                ("Paper's evidence", "text"),
                ("Ours", "number"),
                ("Topic", "text"),
                ("Scale", "text"),
                ("Verdict", "text"),
            ]
        ),
        "<tbody>",
    ]
    esc = html.escape
    for row in rows:
        link = f"../papers/{row['paper']}.html#claim-{row['claim']}"
        evidence = row.get("reported") or "no number read"
        value = row.get("value")
        sort_value = "" if value is None else f"{value:.17g}"
        topic = topic_title(row["topic"])
        lines.append(
            f'<tr data-verdict="{esc(row["verdict"])}" data-topic="{esc(topic)}" '
            f'data-scale="{esc(str(row.get("scale", "")))}">'
            f'<td><a href="{link}">{esc(row["title"])}</a></td>'
            f'<td><a href="{link}">{esc(row["claim"])}</a></td><td>{esc(row["statement"])}</td>'
            f"<td>{esc(str(row.get('source') or ''))}: {esc(str(evidence))}</td>"
            f'<td data-value="{sort_value}">{esc(format_value(row))}</td><td>{esc(topic)}</td>'
            f"<td>{esc(str(row.get('scale', '')))}</td>"
            f'<td data-value="{VERDICTS.index(row["verdict"])}">{verdict_badge(row["verdict"])}</td></tr>'
        )
    lines += ["</tbody></table>", "```", ""]
    return "\n".join(lines)


def scope_markdown(
    entries: Mapping[str, Mapping[str, Any]], chapters: Sequence[str], claims: Mapping[str, Sequence[Mapping]]
) -> str:
    """Return the page that lists every paper in the book's scope with its status.

    Parameters
    ----------
    entries : mapping
        Every paper in scope by slug (catalogue entries updated by the chapters' ``paper.yaml``).
    chapters : sequence of str
        Slugs that have a chapter in the book.
    claims : mapping
        The claim records of each built chapter; a chapter without records reads "not built yet".
    """
    esc = html.escape
    with_chapter = [slug for slug in entries if slug in chapters]
    lines = [
        "# Papers in scope",
        "",
        f"The book's scope is {len(entries)} papers. Chapters so far: {len(with_chapter)}; the other "
        f"{len(entries) - len(with_chapter)} papers are planned. A chapter's status shows how many of its claims each verdict covers in the last build. "
        "Every paper is listed with its BibTeX key in {doc}`/book/references`; {doc}`/book/citing` shows "
        "how to cite a chapter or a single claim.",
        "",
        "```{raw} html",
        filter_controls(
            SCOPE_TABLE_ID,
            {
                "status": ["chapter", "planned"],
                "topic": sorted({topic_title(e.get("topic", "other")) for e in entries.values()}),
            },
            "title, author or arXiv id",
        ),
        f'<table class="rb-dashboard rb-scope" id="{SCOPE_TABLE_ID}" data-filterable>',
        sortable_header(
            [
                ("Paper", "text"),
                ("Authors", "text"),
                ("Year", "number"),
                ("Venue", "text"),
                ("arXiv", "text"),
                ("Topic", "text"),
                ("Status", "text"),
            ]
        ),
        "<tbody>",
    ]
    for slug, entry in entries.items():
        topic = topic_title(entry.get("topic", "other"))
        arxiv = str(entry.get("arxiv") or "")
        arxiv_cell = f'<a href="https://arxiv.org/abs/{esc(arxiv)}">{esc(arxiv)}</a>' if arxiv else ""
        if slug in chapters:
            status = "chapter"
            verdicts = Counter(record["verdict"] for record in claims.get(slug, []))
            summary = count_badges(verdicts) or "not built yet"
            status_cell = f'<a href="../papers/{esc(slug)}.html">chapter</a> {summary}'
        else:
            status = "planned"
            status_cell = '<span class="rb-planned">planned</span>'
        authors = ", ".join(str(name) for name in entry.get("authors") or [])
        lines.append(
            f'<tr id="paper-{esc(slug)}" data-status="{status}" data-topic="{esc(topic)}">'
            f"<td>{esc(str(entry['title']))}</td><td>{esc(authors)}</td><td>{esc(str(entry.get('year', '')))}</td>"
            f"<td>{esc(str(entry.get('venue', '')))}</td><td>{arxiv_cell}</td><td>{esc(topic)}</td>"
            f"<td>{status_cell}</td></tr>"
        )
    lines += ["</tbody></table>", "```", ""]
    return "\n".join(lines)
