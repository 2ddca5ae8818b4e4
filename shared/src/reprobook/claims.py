"""Claims of a paper: load ``paper.yaml``, evaluate each claim's rule, show the claim card.

A notebook records measurements with :meth:`Paper.record`. The result is emitted as a display
output of MIME type :data:`CLAIM_MIME`, and the runner reads it back from the executed notebook
to write ``SLUG.claims.json``. The notebook itself writes nothing to disk.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .stats import (
    SCALES,
    VERDICTS,
    Evaluation,
    RuleError,
    describe_quantity,
    describe_rule,
    evaluate_rule,
    validate_rule,
)
from .yamlfile import load_yaml

CLAIM_MIME = "application/vnd.reprobook.claim+json"
REQUIRED_FIELDS = ("slug", "title", "authors", "year", "venue", "arxiv", "topic", "bibtex_key", "claims")
VERDICT_COLOURS = {
    "reproduced": "#1a7f37",
    "partial": "#9a6700",
    "not-reproduced": "#cf222e",
    "inconclusive": "#6e7781",
    "untestable": "#8250df",
    "error": "#a40e26",
}


class ClaimsError(ValueError):
    """Invalid ``paper.yaml``, unknown claim id, or a claim recorded with unusable measurements."""


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as written in ``paper.yaml``."""

    id: str
    statement: str
    source: str
    reported: str | None
    paper_value: float | None
    scale: str
    scale_note: str
    rule: dict[str, Any]

    @property
    def anchor(self) -> str:
        """HTML id of the claim card, stable across builds (``claim-C2``)."""
        return f"claim-{self.id}"


@dataclass(frozen=True)
class ClaimResult:
    """A claim together with the verdict its rule gave on this run's measurements."""

    claim: Claim
    evaluation: Evaluation
    columns: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """The verdict, one of :data:`reprobook.stats.VERDICTS`."""
        return self.evaluation.verdict

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON record the runner writes to ``SLUG.claims.json``."""
        ev = self.evaluation
        return {
            "claim": self.claim.id,
            "statement": self.claim.statement,
            "verdict": ev.verdict,
            "value": ev.to_dict()["value"],
            "interval": ev.to_dict()["interval"],
            "n_seeds": ev.n_units,
            "unit": self.claim.rule.get("unit", "seed")
            if self.claim.rule["kind"] != "all"
            else self.claim.rule["main"].get("unit", "seed"),
            "detail": ev.detail,
            "paper_value": self.claim.paper_value,
            "reported": self.claim.reported,
            "source": self.claim.source,
            "scale": self.claim.scale,
            "rule": self.claim.rule,
            "rule_text": describe_rule(self.claim.rule),
            "quantity": describe_quantity(self.claim.rule),
        }


def load_paper_yaml(path: Path) -> dict[str, Any]:
    """Read and validate a ``paper.yaml`` file.

    Raises
    ------
    ClaimsError
        Naming the file and the field that is missing or invalid.
    """
    meta = load_yaml(path, ClaimsError, "every paper folder needs a paper.yaml")
    if not isinstance(meta, dict):
        raise ClaimsError(f"{path} must contain a mapping, got {type(meta).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in meta]
    if missing:
        raise ClaimsError(f"{path}: missing fields {', '.join(missing)}")
    if meta["slug"] != path.parent.name:
        raise ClaimsError(f"{path}: slug {meta['slug']!r} differs from the folder name {path.parent.name!r}")
    claims = meta["claims"]
    if not isinstance(claims, list) or not claims:
        raise ClaimsError(f"{path}: 'claims' must be a non-empty list")
    seen: set[str] = set()
    for i, raw in enumerate(claims):
        where = f"{path}: claims[{i}]"
        for name in ("id", "statement", "evidence", "scale", "rule"):
            if name not in raw:
                raise ClaimsError(f"{where} is missing '{name}'")
        if raw["id"] in seen:
            raise ClaimsError(f"{where}: duplicate claim id {raw['id']!r}")
        seen.add(raw["id"])
        if raw["scale"] not in SCALES:
            raise ClaimsError(f"{where}: scale {raw['scale']!r} must be one of {', '.join(SCALES)}")
        if raw["scale"] != "full" and not raw.get("scale_note"):
            raise ClaimsError(f"{where}: scale {raw['scale']!r} needs a scale_note saying what is reduced")
        evidence = raw["evidence"]
        if not isinstance(evidence, dict) or "source" not in evidence or "reported" not in evidence:
            raise ClaimsError(f"{where}: evidence must be a mapping with 'source' and 'reported' (null if none read)")
        try:
            validate_rule(raw["rule"], f"{where}.rule")
        except RuleError as exc:
            raise ClaimsError(str(exc)) from exc
        if raw["rule"]["kind"] == "within" and "target" not in raw["rule"] and raw.get("paper_value") is None:
            raise ClaimsError(f"{where}: a 'within' rule needs rule.target or the claim's paper_value")
    return meta


def claim_from_yaml(raw: Mapping[str, Any]) -> Claim:
    """Build a :class:`Claim` from one validated entry of ``paper.yaml``'s ``claims``."""
    evidence = raw["evidence"]
    reported = evidence.get("reported")
    paper_value = raw.get("paper_value")
    return Claim(
        id=str(raw["id"]),
        statement=" ".join(str(raw["statement"]).split()),
        source=str(evidence.get("source", "")),
        reported=None if reported is None else " ".join(str(reported).split()),
        paper_value=None if paper_value is None else float(paper_value),
        scale=str(raw["scale"]),
        scale_note=" ".join(str(raw.get("scale_note", "")).split()),
        rule=dict(raw["rule"]),
    )


class Paper:
    """A paper's metadata and claims, and the results recorded in this run.

    Parameters
    ----------
    folder : path
        The paper's folder, containing ``paper.yaml``.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder).resolve()
        self.meta = load_paper_yaml(self.folder / "paper.yaml")
        self.claims: dict[str, Claim] = {c.id: c for c in map(claim_from_yaml, self.meta["claims"])}
        self.results: dict[str, ClaimResult] = {}

    @classmethod
    def load(cls, folder: Path | str | None = None) -> Paper:
        """Load the paper in ``folder`` (default: the working directory, as the runner sets it)."""
        return cls(Path.cwd() if folder is None else folder)

    @property
    def slug(self) -> str:
        """The paper's folder name and identifier in the book."""
        return str(self.meta["slug"])

    def claim(self, claim_id: str) -> Claim:
        """Return the claim with id ``claim_id``, or raise :class:`ClaimsError` listing the valid ids."""
        try:
            return self.claims[claim_id]
        except KeyError:
            raise ClaimsError(
                f"claim {claim_id!r} is not in {self.slug}/paper.yaml; its claims are {', '.join(self.claims)}"
            ) from None

    def record(self, claim_id: str, /, **columns: Any) -> ClaimResult:
        """Evaluate a claim's rule on measurements of this run and emit the result.

        Parameters
        ----------
        claim_id : str
            The claim's id in ``paper.yaml``.
        **columns : array-like
            Measurement columns of equal length, one row per seed or per seed and swept value,
            named as the rule names them (``seed`` identifies the resampling unit).

        Returns
        -------
        ClaimResult
        """
        claim = self.claim(claim_id)
        if claim.rule["kind"] == "untestable":
            raise ClaimsError(f"claim {claim_id} is untestable by its rule; do not record it")
        clean = {name: _as_column(name, values) for name, values in columns.items()}
        try:
            evaluation = evaluate_rule(claim.rule, clean, claim.paper_value)
        except RuleError as exc:
            raise ClaimsError(f"claim {claim_id}: {exc}") from exc
        result = ClaimResult(claim, evaluation, {k: _jsonable(v) for k, v in clean.items()})
        self.results[claim_id] = result
        _emit(result)
        return result

    def result(self, claim_id: str) -> ClaimResult:
        """Return the recorded result of a claim, or its static result when it is untestable."""
        claim = self.claim(claim_id)
        if claim_id in self.results:
            return self.results[claim_id]
        if claim.rule["kind"] == "untestable":
            return ClaimResult(claim, evaluate_rule(claim.rule, {}))
        raise ClaimsError(f"claim {claim_id} has not been recorded yet; call paper.record({claim_id!r}, ...) first")

    def show(self, claim_id: str) -> None:
        """Display the claim card of a recorded (or untestable) claim."""
        from IPython.display import HTML, display

        display(HTML(card_html(self.result(claim_id).to_dict())))

    def summary(self) -> None:
        """Display the verdict table of every claim; claims not recorded show as errors."""
        from IPython.display import HTML, display

        rows = []
        for claim_id, claim in self.claims.items():
            if claim_id in self.results or claim.rule["kind"] == "untestable":
                rows.append(self.result(claim_id).to_dict())
            else:
                rows.append(error_record(claim, "not recorded by the notebook"))
        display(HTML(summary_html(rows)))


def _as_column(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ClaimsError(f"measurement '{name}' must be one-dimensional, got shape {array.shape}; flatten it")
    if array.dtype.kind == "O" and len(array) and all(isinstance(v, str) for v in array.tolist()):
        array = array.astype(str)  # text labels held as objects, as pandas stores strings
    if array.dtype.kind not in "biufU":
        raise ClaimsError(
            f"measurement '{name}' must be numeric, boolean or text labels, got {array[:3].tolist()}...; "
            "convert it with np.asarray(values, dtype=float) or str"
        )
    return array


def _jsonable(values: np.ndarray) -> list[Any]:
    out = []
    for v in values.tolist():
        out.append(None if isinstance(v, float) and not math.isfinite(v) else v)
    return out


def _emit(result: ClaimResult) -> None:
    try:
        from IPython.display import display
    except ImportError:
        return
    record = result.to_dict()
    record["columns"] = result.columns
    text = f"{result.claim.id} recorded: {result.verdict}"
    display({CLAIM_MIME: record, "text/plain": text}, raw=True)
    try:
        from myst_nb import glue
    except ImportError:
        return
    # Values for prose: {glue:text}`C1-verdict` and {glue:text}`C1-value` in a markdown cell.
    glue(f"{result.claim.id}-verdict", result.verdict, display=False)
    glue(f"{result.claim.id}-value", format_value(record), display=False)


def error_record(claim: Claim, reason: str) -> dict[str, Any]:
    """Return the claims-file record of a claim whose run failed or never recorded it."""
    return ClaimResult(claim, Evaluation("error", detail=reason)).to_dict()


def format_value(record: Mapping[str, Any]) -> str:
    """Return a claim's measured value with its interval as short text."""
    value = record.get("value")
    if value is None:
        return "–"
    text = f"{value:.4g}"
    interval = record.get("interval")
    if interval and None not in interval:
        text += f" [{interval[0]:.3g}, {interval[1]:.3g}]"
    return text


def verdict_badge(verdict: str) -> str:
    """Return an HTML badge for a verdict."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    colour = VERDICT_COLOURS[verdict]
    return (
        f'<span class="rb-verdict rb-{verdict}" style="background:{colour};color:#fff;border-radius:3px;'
        f'padding:1px 7px;font-weight:600;white-space:nowrap">{verdict}</span>'
    )


def card_html(record: Mapping[str, Any]) -> str:
    """Render the claim card: the paper's statement and numbers beside our value and verdict."""
    esc = html.escape
    claim_id = record["claim"]
    reported = record.get("reported")
    paper_numbers = esc(reported) if reported else "<em>No number from the paper was read for this claim.</em>"
    paper_value = record.get("paper_value")
    if paper_value is not None:
        paper_numbers += f"<br>Reference value: {paper_value:g}"
    n_seeds = record.get("n_seeds") or 0
    unit = str(record.get("unit") or "seed")
    border = VERDICT_COLOURS[record["verdict"]]
    scale = esc(record.get("scale", ""))
    return f"""<div class="rb-card" id="claim-{esc(claim_id)}" style="border:1px solid #d0d7de;border-left:6px solid {border};border-radius:6px;padding:10px 14px;margin:12px 0">
<div style="display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin-bottom:6px">
<a href="#claim-{esc(claim_id)}" style="font-weight:700;text-decoration:none">Claim {esc(claim_id)}</a>
{verdict_badge(record["verdict"])}
<span class="rb-scale" style="color:#57606a">scale: {scale}</span></div>
<div style="display:flex;gap:18px;flex-wrap:wrap">
<div class="rb-paper" style="flex:1 1 260px"><div style="font-weight:600">The paper</div>
<p style="margin:4px 0">{esc(record["statement"])}</p>
<p style="margin:4px 0"><span style="color:#57606a">Evidence ({esc(record.get("source") or "not given")}):</span> {paper_numbers}</p></div>
<div class="rb-ours" style="flex:1 1 260px"><div style="font-weight:600">This run</div>
<p style="margin:4px 0"><span style="color:#57606a">{esc(record.get("quantity") or "value")}:</span>
<span class="rb-value" style="font-family:monospace">{esc(format_value(record))}</span> over {n_seeds} {esc(unit)}s</p>
<p style="margin:4px 0;font-size:90%">{esc(record.get("detail", ""))}</p>
<p style="margin:4px 0;font-size:90%;color:#57606a">Rule: {esc(record.get("rule_text", ""))}</p></div>
</div></div>"""


def summary_html(records: list[Mapping[str, Any]]) -> str:
    """Render the verdict table of a chapter's claims."""
    esc = html.escape
    rows = "".join(
        f'<tr><td><a href="#claim-{esc(r["claim"])}">{esc(r["claim"])}</a></td><td>{esc(r["statement"])}</td>'
        f"<td>{esc(r.get('reported') or '–')}</td><td style='font-family:monospace'>{esc(format_value(r))}</td>"
        f"<td>{esc(r.get('scale', ''))}</td><td>{verdict_badge(r['verdict'])}</td></tr>"
        for r in records
    )
    return (
        '<table class="rb-summary"><thead><tr><th>Claim</th><th>Statement</th><th>Paper</th><th>Ours</th>'
        f"<th>Scale</th><th>Verdict</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def claims_from_notebook(nb: Any) -> dict[str, dict[str, Any]]:
    """Collect the claim records emitted by :meth:`Paper.record` in an executed notebook.

    The last record of a claim wins, as when a reader re-runs a cell.
    """
    found: dict[str, dict[str, Any]] = {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if CLAIM_MIME in data:
                record = dict(data[CLAIM_MIME])
                found[record["claim"]] = record
    return found
