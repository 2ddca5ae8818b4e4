"""Parameter sweeps: run one paper over the cartesian grid of ``-p`` values and report each claim.

A grid is given as ``NAME=V1,V2,...`` (a list of values) or ``NAME=START:STOP[:STEP]`` (an
integer range that, like Python's ``range``, excludes STOP). Every value is converted by the
notebook's annotation and checked against its declared range, and every grid point is validated
by :func:`reprobook.runner.prepare_run` before anything runs. The points then go through
:func:`reprobook.runner.execute_papers`, so each one is cached like a ``reprobook run``.

The report contains one row per grid point and claim (verdict, value, interval) as CSV and JSON,
and one figure per claim shows at which points the claim held.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import Cache
from .params import Parameter, ParameterError, parse_text_value, unknown_name_error
from .runner import DEFAULT_TIMEOUTS, Prepared, RunError, RunRecord, execute_papers, prepare_run

logger = logging.getLogger(__name__)

DEFAULT_MAX_POINTS = 100
_RANGE = re.compile(r"^\s*([+-]?\d+)\s*:\s*([+-]?\d+)\s*(?::\s*([+-]?\d+)\s*)?$")
REPORT_FIELDS = [
    "point",
    "status",
    "claim",
    "verdict",
    "value",
    "interval_low",
    "interval_high",
    "n_seeds",
    "seconds",
    "error",
]


class SweepError(ValueError):
    """An invalid grid: bad syntax, an unknown parameter, an invalid value, or too many points."""


@dataclass(frozen=True)
class Axis:
    """One swept parameter.

    Attributes
    ----------
    name : str
        The parameter of the notebook.
    texts : tuple of str
        Each value as command-line text, which is what :func:`prepare_run` takes.
    values : tuple
        Each value converted to the declared type.
    """

    name: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass
class SweepPlan:
    """A validated sweep: the axes and one prepared run per grid point, in grid order."""

    slug: str
    profile: str
    axes: list[Axis]
    points: list[dict[str, Any]]
    prepared: list[Prepared]


@dataclass
class SweepResult:
    """The records of a sweep, in the order of ``plan.points``."""

    plan: SweepPlan
    records: list[RunRecord]
    wall_seconds: float
    executor: str
    jobs: int | None

    @property
    def ok(self) -> bool:
        """True when every grid point's notebook ran to the end."""
        return all(record.ok for record in self.records)

    def rows(self) -> list[dict[str, Any]]:
        """Return one row per grid point and claim, with the point's parameter values."""
        rows = []
        for index, (point, record) in enumerate(zip(self.plan.points, self.records, strict=True)):
            for claim in record.claims:
                interval = claim.get("interval") or [None, None]
                rows.append(
                    {
                        "point": index,
                        **point,
                        "status": record.status,
                        "claim": claim["claim"],
                        "verdict": claim["verdict"],
                        "value": _finite_or_none(claim.get("value")),
                        "interval_low": _finite_or_none(interval[0]),
                        "interval_high": _finite_or_none(interval[1]),
                        "n_seeds": claim.get("n_seeds"),
                        "seconds": round(record.seconds, 3),
                        "error": record.error,
                    }
                )
        return rows

    def summary(self) -> dict[str, dict[str, Any]]:
        """Return, per claim, at how many grid points it was reproduced and the count of each verdict."""
        verdicts: dict[str, Counter] = {}
        for record in self.records:
            for claim in record.claims:
                verdicts.setdefault(claim["claim"], Counter())[claim["verdict"]] += 1
        return {
            claim: {"reproduced": counts["reproduced"], "points": len(self.records), "verdicts": dict(counts)}
            for claim, counts in verdicts.items()
        }


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas outside brackets, so ``[1,2],[3]`` gives two list values."""
    pieces, depth, current = [], 0, []
    for char in text:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def _axis_texts(name: str, text: str, param: Parameter) -> Sequence[str]:
    """Return the values of one ``-p`` spec as text; an integer range stays lazy until it is sized."""
    match = _RANGE.match(text)
    if match and param.base == "int" and not param.item:
        start, stop = int(match.group(1)), int(match.group(2))
        step = int(match.group(3)) if match.group(3) is not None else 1
        if step == 0:
            raise SweepError(f"-p {name}={text}: the step of a range must not be 0")
        span = range(start, stop, step)
        if len(span) == 0:
            raise SweepError(
                f"-p {name}={text}: the range is empty (START:STOP[:STEP] excludes STOP, like Python's range)"
            )
        return _RangeTexts(span)
    if match and param.base == "float":
        raise SweepError(
            f"-p {name}={text}: ranges START:STOP[:STEP] take int parameters; "
            f"list the values of {param.annotation} parameter {name!r}, e.g. {name}=0.1,0.2,0.5"
        )
    # NOTE: a str value cannot contain a comma, because commas separate the values.
    pieces = split_values(text)
    if any(not piece.strip() for piece in pieces) and param.base != "str":
        raise SweepError(f"-p {name}={text}: empty value in the list; write NAME=V1,V2,...")
    return pieces


class _RangeTexts(Sequence[str]):
    """An integer range seen as the text of each value, without building the list."""

    def __init__(self, span: range) -> None:
        self.span = span

    def __len__(self) -> int:
        return len(self.span)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [str(v) for v in self.span[index]]
        return str(self.span[index])


def parse_grid(
    specs: Sequence[str], params: Mapping[str, Parameter], max_points: int = DEFAULT_MAX_POINTS, where: str = "sweep"
) -> list[Axis]:
    """Parse ``-p`` specs into axes, check the grid's size, then convert and check every value.

    Parameters
    ----------
    specs : sequence of str
        ``NAME=V1,V2,...`` or ``NAME=START:STOP[:STEP]`` (int parameters, STOP excluded).
    params : mapping of str to Parameter
        The notebook's declared parameters.
    max_points : int
        The largest grid accepted; the size is checked before any value is converted.
    where : str
        Prefix of error messages (the paper).

    Raises
    ------
    SweepError
        Naming the spec, the parameter or the grid size, and the fix.
    """
    lazy: list[tuple[str, Sequence[str]]] = []
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise SweepError(f"-p {spec!r} is not of the form NAME=V1,V2,... or NAME=START:STOP[:STEP]")
        if name not in params:
            raise SweepError(str(unknown_name_error(name, params, where)))
        if any(name == seen for seen, _ in lazy):
            raise SweepError(f"-p {name} is given twice; give all values of a parameter in one -p")
        lazy.append((name, _axis_texts(name, text, params[name])))

    size = math.prod(len(texts) for _, texts in lazy)
    if size > max_points:
        shape = " x ".join(f"{len(texts)} {name}" for name, texts in lazy)
        raise SweepError(
            f"{where}: the grid has {size} points ({shape}), more than --max-points {max_points}; "
            "narrow the grid or raise --max-points"
        )

    axes = []
    for name, texts in lazy:
        values = []
        for text in texts:
            try:
                values.append(parse_text_value(params[name], text))
            except ParameterError as exc:
                raise SweepError(f"{where}: -p {name}: {exc}") from None
        seen = [json.dumps(v, sort_keys=True, default=repr) for v in values]
        duplicates = sorted({s for s in seen if seen.count(s) > 1})
        if duplicates:
            raise SweepError(f"{where}: -p {name} lists {', '.join(duplicates)} more than once; give each value once")
        axes.append(Axis(name, tuple(texts[i] for i in range(len(texts))), tuple(values)))
    return axes


def plan_sweep(
    root: Path, slug: str, specs: Sequence[str], profile: str = "book", max_points: int = DEFAULT_MAX_POINTS
) -> SweepPlan:
    """Validate a sweep: the paper, the profile, the grid and every grid point's parameters.

    Raises
    ------
    RunError
        For an unknown paper or profile, or a grid point whose parameters are invalid.
    SweepError
        For an invalid grid or one larger than ``max_points``.
    """
    base = prepare_run(root, slug, profile)
    axes = parse_grid(specs, base.paper.parameters, max_points, where=slug)
    points, prepared = [], []
    for combination in itertools.product(*(range(len(axis.values)) for axis in axes)):
        texts = {axis.name: axis.texts[i] for axis, i in zip(axes, combination, strict=True)}
        try:
            prepared.append(prepare_run(root, slug, profile, texts))
        except RunError as exc:
            label = ", ".join(f"{k}={v}" for k, v in texts.items())
            raise RunError(f"grid point {label}: {exc}") from None
        points.append({axis.name: axis.values[i] for axis, i in zip(axes, combination, strict=True)})
    return SweepPlan(slug, profile, axes, points, prepared)


def run_sweep(
    root: Path,
    plan: SweepPlan,
    executor: Any,
    force: bool = False,
    timeout: float | None = None,
    on_event: Callable[[str, Any], None] | None = None,
) -> SweepResult:
    """Run every grid point through ``executor``, taking cached points from the project's cache.

    A point that fails, times out or loses its worker is reported with that status. The other
    points still run, and every point that finished is stored in the cache.
    """
    start = time.monotonic()
    records = execute_papers(
        plan.prepared,
        Cache(root / ".reprobook" / "cache"),
        executor,
        lambda p: timeout or DEFAULT_TIMEOUTS.get(p, 3600.0),
        force=force,
        on_event=on_event,
    )
    return SweepResult(
        plan, records, time.monotonic() - start, type(executor).__name__, getattr(executor, "jobs", None)
    )


def write_report(result: SweepResult, output_dir: Path) -> list[Path]:
    """Write ``SLUG-sweep.csv``, ``SLUG-sweep.json`` and one figure per claim; return the paths."""
    from .sweep_figures import plot_claim

    output_dir.mkdir(parents=True, exist_ok=True)
    plan = result.plan
    rows = result.rows()
    names = [axis.name for axis in plan.axes]

    csv_path = output_dir / f"{plan.slug}-sweep.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["point", *names, *REPORT_FIELDS[1:]])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_text(v) for k, v in row.items()})

    json_path = output_dir / f"{plan.slug}-sweep.json"
    report = {
        "paper": plan.slug,
        "profile": plan.profile,
        "axes": {axis.name: list(axis.values) for axis in plan.axes},
        "points": len(plan.points),
        "executor": result.executor,
        "jobs": result.jobs,
        "wall_seconds": round(result.wall_seconds, 3),
        "summary": result.summary(),
        "runs": [
            {"point": i, "grid": point, **record.report_entry()}
            for i, (point, record) in enumerate(zip(plan.points, result.records, strict=True))
        ],
        "rows": rows,
    }
    json_path.write_text(json.dumps(report, indent=1, default=repr) + "\n")

    paths = [csv_path, json_path]
    for claim in result.summary():
        paths.append(plot_claim(result, claim, output_dir / f"{plan.slug}-sweep-{claim}.png"))
    return paths


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_text(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else value
