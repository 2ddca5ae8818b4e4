"""Time the book build against its targets and write the results page, the figure and the raw JSON.

Every measurement times a whole command, as a user would run it, in a fresh copy of the project
under a work folder, so the repository's own cache and book are never touched:

- cold ``reprobook build --jobs 1`` and ``--jobs 2`` (each in a new copy, so the cache is empty);
- in the ``--jobs 2`` copy afterwards: a build with nothing changed, with one chapter's code
  changed and with one chapter's markdown changed (all with ``--jobs 2``);
- Jupyter Book's own execution of the same notebooks: a temporary book whose chapters are the
  papers' notebooks with the profile's parameters injected by papermill (``prepare_only``),
  built with ``execute_notebooks: force``, which executes one notebook after the other;
- per-notebook overhead in the serial cold build: the runner's time for the notebook minus the
  notebook's own cell time, split into kernel start, imports and the rest (see
  :func:`notebook_overhead` for the rule that decides which cells are imports).

Each measurement is repeated ``--repeat`` times, one repetition of all of them after the other,
so that a change of load hits every measurement alike. Results are medians with min-max.

Usage::

    python benchmarks/build_times.py                      # every paper at `ci`, 3 repetitions
    python benchmarks/build_times.py --profile book --papers neural-tangent-kernel sgd-last-iterate
    python benchmarks/build_times.py --quick --output-dir /tmp/bench   # two scaffolded papers, one repetition

Nothing in the repository may change during a run: the cache key hashes the ``reprobook``
package's source, so an edit there re-executes every chapter in the incremental builds (their
notes in the table give the executed and cached counts). The numbers are only comparable
between runs on an idle machine, so the page records the load
average at the start and the end of the run.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
import yaml

from reprobook.execute import choose_kernel, kernel_environment
from reprobook.pipeline import RESULTS_DIR
from reprobook.project import list_papers
from reprobook.runner import DEFAULT_TIMEOUTS, prepare_run

logger = logging.getLogger("build_times")

REPO = Path(__file__).resolve().parents[1]
PAGE = Path("book") / "benchmarks.md"
FIGURE = Path("book") / "_static" / "benchmarks" / "build_times.png"
RESULTS = Path("benchmarks") / "results"
# Files and folders a build needs besides the papers. The generated folders are left out so a copy
# is cold, and the benchmark page stays in, because the table of contents may list it.
SKELETON = ["_config.yml", "_toc.yml", "environment.yml", "CITATION.cff", "book"]
SKELETON_IGNORE = shutil.ignore_patterns("papers", "_generated", "__pycache__", ".ipynb_checkpoints")
QUICK_PAPERS = ["bench-first", "bench-second"]
PARALLEL_JOBS = 2
EDIT_MARK = "benchmark_edit"

# Limits of the targets (seconds, except the two factors).
NOOP_LIMIT_S = 10.0
CHANGED_SLACK_S = 30.0
OVERHEAD_LIMIT_S = 4.0
COLD_SLACK = 1.1
BASELINE_SPEEDUP = 1.8

MEASUREMENTS = {
    "cold_jobs1": "cold build, --jobs 1",
    "cold_jobs2": f"cold build, --jobs {PARALLEL_JOBS}",
    "noop": "build, nothing changed",
    "code_change": "build, one chapter's code changed",
    "markdown_change": "build, one chapter's markdown changed",
    "jupyter_book": "Jupyter Book, execute_notebooks: force",
}


# --------------------------------------------------------------------------- commands and copies


def tool_command(script: str, module_entry: list[str]) -> list[str]:
    """Return the console script next to this interpreter, or ``python`` with ``module_entry``."""
    path = Path(sys.executable).with_name(script)
    return [str(path)] if path.is_file() else [sys.executable, *module_entry]


def run_timed(command: Sequence[str], cwd: Path, log: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``command`` in ``cwd``, write its output to ``log`` and return its wall time and exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    logger.info("running %s in %s", " ".join(command), cwd)
    start = time.perf_counter()
    with open(log, "w") as handle:
        try:
            completed = subprocess.run(
                list(command), cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout
            )
            returncode = completed.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    seconds = time.perf_counter() - start
    if returncode != 0:
        logger.warning("%s exited with %s after %.1f s; see %s", command[0], returncode, seconds, log)
    return {"seconds": seconds, "returncode": returncode, "log": str(log)}


def project_env(root: Path, execution: str = "workers") -> dict[str, str]:
    """Return the environment for commands on the copy at ``root``: its root, one thread per kernel, the execution mode."""
    env = {**os.environ, **kernel_environment(1), "REPROBOOK_ROOT": str(root), "REPROBOOK_EXECUTION": execution}
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    return env


def copy_project(source: Path, target: Path, slugs: Sequence[str]) -> Path:
    """Copy the book's skeleton and the given paper folders of ``source`` into ``target``."""
    target.mkdir(parents=True)
    for name in SKELETON:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=SKELETON_IGNORE)
        elif path.is_file():
            shutil.copy2(path, target / name)
    for slug in slugs:
        shutil.copytree(
            source / "papers" / slug,
            target / "papers" / slug,
            ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"),
        )
    (target / "papers").mkdir(exist_ok=True)
    return target


def make_quick_source(work: Path, timeout: float) -> Path:
    """Create a copy of the project without papers and scaffold the quick mode's papers with ``reprobook new``."""
    root = copy_project(REPO, work / "quick-source", [])
    for slug in QUICK_PAPERS:
        command = tool_command("reprobook", ["-m", "reprobook"]) + ["new", slug, "--topic", "benchmarks"]
        outcome = run_timed(command, root, work / "logs" / f"new-{slug}.log", project_env(root), timeout)
        if outcome["returncode"] != 0:
            raise RuntimeError(f"`reprobook new {slug}` failed; see {outcome['log']}")
    return root


# --------------------------------------------------------------------------- reprobook builds


def reprobook_build(
    root: Path, profile: str, jobs: int, log: Path, timeout: float, execution: str = "workers"
) -> dict[str, Any]:
    """Time ``reprobook build`` on the copy at ``root`` and attach its build report."""
    command = tool_command("reprobook", ["-m", "reprobook"]) + ["build", "--profile", profile, "--jobs", str(jobs)]
    outcome = run_timed(command, root, log, project_env(root, execution), timeout)
    report_path = root / RESULTS_DIR / "build-report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    outcome["execution_seconds"] = report.get("wall_seconds")
    outcome["counts"] = report.get("counts", {})
    outcome["failed"] = report.get("failed")
    outcome["papers"] = {entry["slug"]: entry["seconds"] for entry in report.get("papers", [])}
    return outcome


def edit_code(root: Path, slug: str, repetition: int) -> None:
    """Prepend an assignment to the last code cell of the copy's notebook, which forces a re-execution.

    The line goes first in the cell so the cell's last expression, and with it the displayed
    output, stays the same.
    """
    path = root / "papers" / slug / f"{slug}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = [c for c in nb.cells if c.cell_type == "code"][-1]
    cell.source = f"{EDIT_MARK} = {repetition}  # added by benchmarks/build_times.py\n{cell.source}"
    nbformat.write(nb, path)


def edit_markdown(root: Path, slug: str, repetition: int) -> None:
    """Append a sentence to the last markdown cell of the copy's notebook, which leaves the cache key unchanged."""
    path = root / "papers" / slug / f"{slug}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    cell.source += f"\n\nThis sentence was added by the build benchmark (repetition {repetition})."
    nbformat.write(nb, path)


def import_cell_indices(nb: Any) -> set[int]:
    """Return the indices of the notebook's import cells.

    Rule: after the ``parameters`` and ``injected-parameters`` cells, every code cell whose first
    top-level statement is ``import`` or ``from ... import`` is an import cell, up to the first
    code cell that begins otherwise. Such a cell counts whole, so set-up lines that follow its
    imports in the same cell (``paper = rb.Paper.load()``) count as import time too.
    """
    indices: set[int] = set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            continue
        try:
            body = ast.parse(cell.source).body
        except SyntaxError:  # IPython magics and shell escapes are not Python
            body = []
        if not body or not isinstance(body[0], ast.Import | ast.ImportFrom):
            break
        indices.add(index)
    return indices


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def notebook_overhead(nb: Any, total_seconds: float) -> dict[str, float]:
    """Split a notebook's time in the runner into its own cell time and the overhead.

    ``total_seconds`` is the runner's time for the notebook (the ``seconds`` of the build report:
    from starting the executing process to reading its result). The parts come from papermill's
    timestamps in the executed notebook:

    - ``own``: the durations of the code cells other than the parameters cells and the import
      cells of :func:`import_cell_indices`;
    - ``overhead``: ``total_seconds - own``, made of
      ``kernel_start`` (from papermill's notebook start to the start of the first cell),
      ``imports`` (the durations of the import cells) and ``rest`` (interpreter and papermill
      start-up, the parameters cells, gaps between cells, kernel shutdown, writing the result).

    ``outside_papermill`` is the part of ``rest`` before papermill's start and after its end
    (``total_seconds`` minus papermill's ``duration``): interpreter start, imports of papermill
    and the runner, reading and writing the notebook.
    """
    papermill_meta = nb.metadata.get("papermill", {})
    start = papermill_meta.get("start_time")
    cells = [c for c in nb.cells if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not start or not cells:
        raise ValueError("the notebook has no papermill timestamps; was it executed by papermill?")
    first_cell = min(_timestamp(c.metadata.papermill["start_time"]) for c in cells)
    kernel_start = first_cell - _timestamp(start)
    imports_at = import_cell_indices(nb)
    imports = own = 0.0
    for index, cell in enumerate(nb.cells):
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.cell_type != "code" or duration is None:
            continue
        tags = cell.metadata.get("tags", [])
        if index in imports_at:
            imports += duration
        elif "parameters" not in tags and "injected-parameters" not in tags:
            own += duration
    overhead = total_seconds - own
    return {
        "total": total_seconds,
        "own": own,
        "overhead": overhead,
        "kernel_start": kernel_start,
        "imports": imports,
        "rest": overhead - kernel_start - imports,
        "outside_papermill": None
        if papermill_meta.get("duration") is None
        else total_seconds - papermill_meta["duration"],
    }


def overheads_of_build(root: Path, papers: dict[str, float]) -> dict[str, dict[str, float]]:
    """Return :func:`notebook_overhead` for every executed chapter of the build at ``root``."""
    parts = {}
    for slug, seconds in papers.items():
        chapter = root / "book" / "papers" / f"{slug}.ipynb"
        try:
            parts[slug] = notebook_overhead(nbformat.read(chapter, as_version=4), seconds)
        except (OSError, ValueError) as exc:
            logger.warning("%s: no overhead breakdown: %s", slug, exc)
    return parts


# --------------------------------------------------------------------------- Jupyter Book baseline


def baseline_config(profile: str) -> dict[str, Any]:
    """Return the ``_config.yml`` of the baseline book: the project's rendering options, forced serial execution."""
    project = yaml.safe_load((REPO / "_config.yml").read_text())
    sphinx_config = project.get("sphinx", {}).get("config", {})
    keep = ("nb_mime_priority_overrides", "suppress_warnings", "myst_heading_anchors")
    return {
        "title": "Jupyter Book baseline",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**/.ipynb_checkpoints"],
        # myst-nb's "force" mode executes every notebook of the book, one after the other.
        "execute": {
            "execute_notebooks": "force",
            "execution_in_temp": False,
            "timeout": int(DEFAULT_TIMEOUTS.get(profile, 3600.0)),
        },
        "sphinx": {"config": {name: sphinx_config[name] for name in keep if name in sphinx_config}},
        "parse": project.get("parse", {}),
    }


def make_baseline_book(source: Path, slugs: Sequence[str], profile: str, target: Path) -> Path:
    """Write a book whose chapters are the papers' notebooks with the profile's parameters injected."""
    # NOTE: this book has only an intro page and the chapters, while `reprobook build` also renders the
    # front matter (method, dashboard, references), so Jupyter Book's time includes a smaller render.
    import papermill

    kernel = choose_kernel()
    target.mkdir(parents=True)
    chapters = []
    for slug in slugs:
        prepared = prepare_run(source, slug, profile)
        folder = target / "papers" / slug
        shutil.copytree(
            prepared.paper.folder, folder, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
        )
        notebook = folder / f"{slug}.ipynb"
        papermill.execute_notebook(
            str(prepared.paper.notebook_path),
            str(notebook),
            parameters=prepared.parameters,
            prepare_only=True,
            kernel_name=kernel,
            language="python",
            progress_bar=False,
        )
        nb = nbformat.read(notebook, as_version=4)
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
        nbformat.write(nb, notebook)
        chapters.append({"file": f"papers/{slug}/{slug}"})
    (target / "intro.md").write_text("# Jupyter Book baseline\n\nThe papers' notebooks, executed by Jupyter Book.\n")
    toc = {"format": "jb-book", "root": "intro", "chapters": chapters}
    (target / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (target / "_config.yml").write_text(yaml.safe_dump(baseline_config(profile), sort_keys=False))
    return target


def jupyter_book_build(root: Path, log: Path, timeout: float) -> dict[str, Any]:
    """Time ``jupyter-book build`` on the baseline book and count the notebooks whose execution failed."""
    entry = ["-c", "from jupyter_book.cli.main import main; main()"]
    command = tool_command("jupyter-book", entry) + ["build", str(root), "--builder", "html"]
    env = {**os.environ, **kernel_environment(1)}
    outcome = run_timed(command, root, log, env, timeout)
    text = log.read_text(errors="replace")
    # myst-nb 1.4 (core/execute/direct.py) logs this line at WARNING level for each notebook whose execution raised.
    outcome["failed"] = text.count("Executing notebook failed")
    # ... and this one, at INFO level, for each notebook that ran through.
    outcome["notebook_seconds"] = [float(x) for x in re.findall(r"Executed notebook in ([0-9.]+) seconds", text)]
    return outcome


# --------------------------------------------------------------------------- statistics and targets


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Return the median, min, max, quartiles and count of the values that are not None."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None, "n": 0}
    if len(present) >= 2:
        q1, _, q3 = statistics.quantiles(present, n=4, method="inclusive")
    else:
        q1 = q3 = present[0]
    return {
        "median": statistics.median(present),
        "min": present[0],
        "max": present[-1],
        "q1": q1,
        "q3": q3,
        "n": len(present),
    }


def summarise(runs: list[dict[str, Any]], changed: str) -> dict[str, Any]:
    """Return the medians and spreads of every measurement over the repetitions in ``runs``."""
    measured = {}
    for name in MEASUREMENTS:
        measured[name] = summary([run[name]["seconds"] for run in runs])
    for name in ("cold_jobs1", "cold_jobs2"):
        measured[f"{name}_execution"] = summary([run[name]["execution_seconds"] for run in runs])
    measured["render"] = summary(
        [
            run["cold_jobs2"]["seconds"] - run["cold_jobs2"]["execution_seconds"]
            for run in runs
            if run["cold_jobs2"]["execution_seconds"] is not None
        ]
    )
    slugs = sorted({slug for run in runs for slug in run["overheads"]})
    per_paper = {}
    for slug in slugs:
        parts = [run["overheads"][slug] for run in runs if slug in run["overheads"]]
        per_paper[slug] = {key: summary([p[key] for p in parts]) for key in parts[0]}
    measured["per_paper"] = per_paper
    return {"measurements": measured, "targets": targets(measured, changed)}


def _ratio_row(
    name: str, value: float | None, limit: float | None, smaller_is_better: bool, detail: str, unit: str = "s"
) -> dict:
    row = {"target": name, "value": value, "limit": limit, "unit": unit, "ratio": None, "met": None, "detail": detail}
    if value is None or limit is None or limit <= 0:
        return row
    row["ratio"] = value / limit
    row["met"] = row["ratio"] <= 1.0 if smaller_is_better else row["ratio"] >= 1.0
    return row


def targets(measured: dict[str, Any], changed: str) -> list[dict[str, Any]]:
    """Return each target with the measured value, its limit, their ratio and whether it is met.

    For targets where smaller is better the ratio is value / limit and must be at most 1; for the
    speed-up over Jupyter Book it is the speed-up / 1.8 and must be at least 1.
    """
    per_paper = measured["per_paper"]
    own_sum = sum(p["own"]["median"] for p in per_paper.values()) if per_paper else None
    render = measured["render"]["median"]
    cold_limit = None
    if own_sum is not None and render is not None:
        cold_limit = COLD_SLACK * own_sum / PARALLEL_JOBS + render
    changed_own = per_paper.get(changed, {}).get("own", {}).get("median")
    worst_slug = max(per_paper, key=lambda s: per_paper[s]["overhead"]["median"]) if per_paper else None
    worst = per_paper[worst_slug]["overhead"]["median"] if worst_slug else None
    cold2 = measured["cold_jobs2"]["median"]
    baseline = measured["jupyter_book"]["median"]
    speedup = baseline / cold2 if baseline and cold2 else None
    return [
        _ratio_row(
            f"cold build, --jobs {PARALLEL_JOBS}",
            cold2,
            cold_limit,
            True,
            f"limit {COLD_SLACK} x (sum of own cell times) / {PARALLEL_JOBS} + render",
        ),
        _ratio_row(
            "build, nothing changed", measured["noop"]["median"], NOOP_LIMIT_S, True, f"limit {NOOP_LIMIT_S:g} s"
        ),
        _ratio_row(
            "build, one chapter's code changed",
            measured["code_change"]["median"],
            None if changed_own is None else changed_own + CHANGED_SLACK_S,
            True,
            f"limit: own cell time of {changed} + {CHANGED_SLACK_S:g} s",
        ),
        _ratio_row(
            "per-notebook overhead (worst paper)",
            worst,
            OVERHEAD_LIMIT_S,
            True,
            f"limit {OVERHEAD_LIMIT_S:g} s; worst: {worst_slug}",
        ),
        _ratio_row(
            f"speed-up of --jobs {PARALLEL_JOBS} over Jupyter Book",
            speedup,
            BASELINE_SPEEDUP,
            False,
            f"Jupyter Book time / cold build time, at least {BASELINE_SPEEDUP:g}",
            unit="x",
        ),
    ]


# --------------------------------------------------------------------------- machine, output


def describe_machine() -> dict[str, Any]:
    """Return the CPU model, core counts, memory and the versions that the timings depend on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        import psutil

        memory_gib = psutil.virtual_memory().total / 2**30
    except ImportError:
        pass
    versions = {}
    for package in ("torch", "papermill", "jupyter-book", "myst-nb", "sphinx", "reprobook"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        completed = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _spread(stats: dict[str, Any]) -> str:
    if not stats["n"]:
        return "n/a"
    return f"{stats['min']:.1f} to {stats['max']:.1f}"


def measurement_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Return (measurement, median s, min-max s, repetitions, notes) rows for the table."""
    measured = results["measurements"]
    rows = []
    for name, label in MEASUREMENTS.items():
        stats = measured[name]
        notes = []
        if name.startswith("cold_"):
            notes.append(f"execution {_seconds(measured[name + '_execution']['median'])} s")
        statuses = {str(run[name].get("returncode")) for run in results["runs"]}
        if statuses != {"0"}:
            notes.append(f"exit status {', '.join(sorted(statuses))}")
        counts = [run[name].get("counts") for run in results["runs"] if run[name].get("counts")]
        if counts and name not in ("cold_jobs1", "cold_jobs2"):
            notes.append(f"executed {counts[-1].get('executed', 0)}, cached {counts[-1].get('cached', 0)}")
        executed = [sum(run[name]["notebook_seconds"]) for run in results["runs"] if run[name].get("notebook_seconds")]
        if executed:
            notes.append(f"execution {_seconds(statistics.median(executed))} s (myst-nb's times, summed)")
        failed = sum(run[name].get("failed") or 0 for run in results["runs"])
        if failed:
            notes.append(f"{failed} notebook(s) failed")
        rows.append((label, _seconds(stats["median"]), _spread(stats), str(stats["n"]), "; ".join(notes)))
    efficiency = results["parallel_efficiency"]
    rows.append(
        (
            f"parallel efficiency, --jobs {PARALLEL_JOBS}",
            "n/a" if efficiency is None else f"{efficiency:.2f}",
            "",
            "",
            f"execution --jobs 1 / ({PARALLEL_JOBS} x execution --jobs {PARALLEL_JOBS}), medians",
        )
    )
    render = measured["render"]
    rows.append(("render and start-up", _seconds(render["median"]), _spread(render), str(render["n"]), ""))
    return rows


def target_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Return (target, measured, limit, ratio, met) rows."""
    rows = []
    for row in results["targets"]:
        met = {True: "met", False: "not met", None: "n/a"}[row["met"]]
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        if row["unit"] == "x":
            value, limit = (f"{v:.2f}x" if v is not None else "n/a" for v in (row["value"], row["limit"]))
        else:
            value, limit = f"{_seconds(row['value'])} s", f"{_seconds(row['limit'])} s"
        rows.append((row["target"], value, f"{limit} ({row['detail']})", ratio, met))
    return rows


def overhead_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Return one row per paper: total, own cell time, overhead and its parts, medians in seconds."""
    rows = []
    for slug, parts in results["measurements"]["per_paper"].items():
        keys = ("total", "own", "overhead", "kernel_start", "imports", "rest", "outside_papermill")
        rows.append((slug, *(_seconds(parts[key]["median"]) for key in keys)))
    return rows


COMPARISON_HEADER = ("measurement", "before (s)", "after (s)", "after / before")


def comparison_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Return the medians of every measurement and target before and after, with their ratio."""
    before = results.get("before")
    if not before:
        return []
    rows = []
    names = [*MEASUREMENTS, "cold_jobs1_execution", "cold_jobs2_execution", "render"]
    labels = {
        **MEASUREMENTS,
        "cold_jobs1_execution": "cold --jobs 1, execution only",
        "cold_jobs2_execution": f"cold --jobs {PARALLEL_JOBS}, execution only",
        "render": "render and start-up",
    }
    for name in names:
        old = before["measurements"].get(name, {}).get("median")
        new = results["measurements"].get(name, {}).get("median")
        ratio = f"{new / old:.2f}" if old and new is not None else ""
        rows.append((labels[name], _seconds(old), _seconds(new), ratio))
    for old_row, new_row in zip(before["targets"], results["targets"], strict=False):
        old, new = old_row.get("value"), new_row.get("value")
        ratio = f"{new / old:.2f}" if old and new is not None else ""
        unit = new_row.get("unit", "s")
        rows.append((f"target: {new_row['target']} ({unit})", _seconds(old), _seconds(new), ratio))
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a MyST pipe table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def print_tables(results: dict[str, Any]) -> None:
    """Print the measurements, the targets and the per-notebook overhead as plain-text tables."""
    for title, header, rows in (
        ("Measurements (seconds)", ("measurement", "median", "min-max", "n", "notes"), measurement_rows(results)),
        ("Targets", ("target", "measured", "limit", "ratio", "status"), target_rows(results)),
        ("Per-notebook time (medians, seconds)", OVERHEAD_HEADER, overhead_rows(results)),
        ("Before and after (medians)", COMPARISON_HEADER, comparison_rows(results)),
    ):
        if not rows:
            continue
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        print(f"\n{title}")
        for row in [header, *rows]:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


OVERHEAD_HEADER = (
    "paper",
    "total",
    "own cells",
    "overhead",
    "kernel start",
    "imports",
    "rest",
    "of rest: outside papermill",
)


def write_figure(results: dict[str, Any], path: Path) -> None:
    """Draw the build times (median bars, min-max lines) and the per-notebook parts, and save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from reprobook.plotting import use_theme

    use_theme()
    times = pd.DataFrame(
        [
            {"measurement": label, "seconds": run[name]["seconds"]}
            for run in results["runs"]
            for name, label in MEASUREMENTS.items()
        ]
    )
    parts = pd.DataFrame(
        [
            {"paper": slug, "part": part, "seconds": stats[key]["median"]}
            for slug, stats in results["measurements"]["per_paper"].items()
            for key, part in (
                ("own", "own cells"),
                ("kernel_start", "kernel start"),
                ("imports", "imports"),
                ("rest", "rest"),
            )
        ]
    )
    height = max(3.4, 0.35 * len(results["measurements"]["per_paper"]) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, height), layout="constrained")
    sns.barplot(times, y="measurement", x="seconds", estimator="median", errorbar=("pi", 100), ax=left)
    left.set(title="Whole commands: median, line from min to max", ylabel="", xlabel="seconds")
    if not parts.empty:
        wide = parts.pivot(index="paper", columns="part", values="seconds")[
            ["own cells", "kernel start", "imports", "rest"]
        ]
        wide.clip(lower=0).plot.barh(stacked=True, ax=right, color=sns.color_palette(n_colors=4))
        right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=4, fontsize="small", frameon=False)
    right.set(title="Per notebook, serial cold build (medians)", ylabel="", xlabel="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def page_markdown(results: dict[str, Any], figure_relative: str) -> str:
    """Return the results page: what was measured, on what machine, the tables and the figure."""
    machine = results["machine"]
    settings = results["settings"]
    memory = "unknown" if machine["memory_gib"] is None else f"{machine['memory_gib']:.1f} GiB"
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    load = results["load_average"]
    lines = ["# Build times", ""]
    if settings["quick"]:
        lines += [
            "```{warning} Quick mode",
            "These numbers come from the benchmark's quick mode: two scaffolded papers from `reprobook new` "
            "and one repetition. They test the benchmark script, not the book's build.",
            "```",
            "",
        ]
    lines += [
        "`python benchmarks/build_times.py` times whole commands in fresh copies of the project and "
        f"repeats each measurement {settings['repeat']} time(s). This run used profile `{settings['profile']}` "
        f"and the papers {', '.join(f'`{s}`' for s in settings['papers'])}; the changed chapter was "
        f"`{settings['changed']}`; notebooks ran with execution `{settings.get('execution', 'workers')}`. "
        "Values are medians with the range from min to max.",
        "",
        "## Machine",
        "",
        markdown_table(
            ("item", "value"),
            [
                ("CPU", str(machine["cpu"])),
                ("cores", f"{machine['cores']} ({machine['usable_cores']} usable by this process)"),
                ("memory", memory),
                ("Python", machine["python"]),
                ("platform", machine["platform"]),
                ("versions", versions),
                ("commit", str(machine["commit"])),
                ("load average (1, 5, 15 min), start", ", ".join(f"{v:.2f}" for v in load["start"])),
                ("load average (1, 5, 15 min), end", ", ".join(f"{v:.2f}" for v in load["end"])),
                ("date (UTC)", results["started"]),
            ],
        ),
        "",
        "The timings are only comparable between runs on an idle machine: a load average above the core "
        "count means other processes shared the cores during this run.",
        "",
        "## Measurements",
        "",
        markdown_table(("measurement", "median (s)", "min to max (s)", "n", "notes"), measurement_rows(results)),
        "",
        f"![Build times]({figure_relative})",
        "",
        "## Targets",
        "",
        markdown_table(("target", "measured", "limit", "ratio", "status"), target_rows(results)),
        "",
        "## Per-notebook time",
        "",
        markdown_table(OVERHEAD_HEADER, overhead_rows(results)),
        "",
        *comparison_section(results),
        "## Definitions",
        "",
        "- **Cold build**: `reprobook build --jobs N` in a new copy of the project, so the cache is empty "
        "and the whole book is rendered. *Execution* is the build report's wall time, before rendering.",
        "- **Render and start-up**: the cold `--jobs 2` command time minus its execution time, which is "
        "the interpreter's start, writing the pages and the Jupyter Book render.",
        "- **Nothing changed, code changed, markdown changed**: `reprobook build --jobs 2` in the copy of "
        "the cold `--jobs 2` build, after no edit, after an assignment was added to the first line of the "
        "last code cell of the changed chapter, and after a sentence was added to its last markdown cell.",
        "- **Jupyter Book**: `jupyter-book build` of a book whose chapters are the same notebooks with the "
        "profile's parameters injected by papermill, with `execute_notebooks: force` (one notebook after "
        "the other), in a new folder each time. Both builds run kernels with one thread.",
        "- **Total** per notebook: the runner's time for it in the serial cold build (from starting the "
        "executing process to reading its result). **Own cells**: the durations papermill recorded for "
        "its code cells, without the parameters cells and the import cells. **Overhead**: total minus "
        "own cells. **Kernel start**: from papermill's start to the first cell. **Imports**: the import "
        "cells, which are the code cells after the parameters cells that begin with an `import` "
        "statement, up to the first that does not; a cell counts whole, set-up lines included. "
        "**Rest**: the remainder (interpreter and papermill start-up, parameters cells, kernel shutdown, "
        "writing the result). **Outside papermill**: the part of the rest before papermill's start and "
        "after its end (interpreter start, imports of papermill and the runner, reading and writing files).",
        "",
    ]
    return "\n".join(lines)


def comparison_section(results: dict[str, Any]) -> list[str]:
    """Return the page's "Before and after" section, or nothing when no earlier run was given."""
    before = results.get("before")
    if not before:
        return []
    old_mode = before["settings"].get("execution", "process")
    load = before.get("load_average") or {}
    load_text = ", ".join(f"{v:.2f}" for v in load.get("start", [])) or "unknown"
    return [
        "## Before and after",
        "",
        f"*Before* is the run in `{before['file']}` (execution `{old_mode}`, load average at its start "
        f"{load_text}); *after* is this run (execution `{results['settings']['execution']}`). "
        "`process` starts a new process and kernel for every notebook; `workers` runs notebooks in "
        "long-lived worker processes on kernels started ahead of time with the common modules imported.",
        "",
        markdown_table(COMPARISON_HEADER, comparison_rows(results)),
        "",
    ]


def write_outputs(results: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    """Write the JSON results, the figure and the page under ``output_dir``; return their paths."""
    stamp = results["started"].replace(":", "").replace("-", "")
    settings = results["settings"]
    json_path = (
        output_dir / RESULTS / f"build_times-{settings['profile']}-{settings.get('execution', 'workers')}-{stamp}.json"
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    figure_path = output_dir / FIGURE
    write_figure(results, figure_path)
    page_path = output_dir / PAGE
    page_path.parent.mkdir(parents=True, exist_ok=True)
    figure_relative = os.path.relpath(figure_path, page_path.parent)
    page_path.write_text(page_markdown(results, figure_relative))
    return {"json": json_path, "figure": figure_path, "page": page_path}


# --------------------------------------------------------------------------- one repetition, main


def run_repetition(
    source: Path,
    slugs: Sequence[str],
    profile: str,
    changed: str,
    work: Path,
    repetition: int,
    timeout: float,
    execution: str = "workers",
) -> dict[str, Any]:
    """Run every measurement once, each cold one in a new copy of ``source``."""
    logs = work / "logs" / f"r{repetition}"
    run: dict[str, Any] = {"repetition": repetition}
    for jobs in (1, PARALLEL_JOBS):
        root = copy_project(source, work / f"r{repetition}-jobs{jobs}", slugs)
        run[f"cold_jobs{jobs}"] = reprobook_build(
            root, profile, jobs, logs / f"cold-jobs{jobs}.log", timeout, execution
        )
        if jobs == 1:
            run["overheads"] = overheads_of_build(root, run["cold_jobs1"]["papers"])

    warm = work / f"r{repetition}-jobs{PARALLEL_JOBS}"
    run["noop"] = reprobook_build(warm, profile, PARALLEL_JOBS, logs / "noop.log", timeout, execution)
    edit_code(warm, changed, repetition)
    run["code_change"] = reprobook_build(warm, profile, PARALLEL_JOBS, logs / "code-change.log", timeout, execution)
    edit_markdown(warm, changed, repetition)
    run["markdown_change"] = reprobook_build(
        warm, profile, PARALLEL_JOBS, logs / "markdown-change.log", timeout, execution
    )

    expected = {"noop": 0, "code_change": 1, "markdown_change": 0}
    for name, count in expected.items():
        executed = run[name]["counts"].get("executed", 0)
        if executed != count:
            # The cache key hashes the reprobook package's source and environment.yml, so an edit
            # to either during the run re-executes every chapter and inflates these timings.
            logger.warning(
                "%s: %d notebook(s) executed where %d were expected; did the package source or "
                "environment.yml change during the run?",
                MEASUREMENTS[name],
                executed,
                count,
            )

    baseline = make_baseline_book(source, slugs, profile, work / f"r{repetition}-jupyter-book")
    run["jupyter_book"] = jupyter_book_build(baseline, logs / "jupyter-book.log", timeout)
    return run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", help="profile every notebook runs at (default: ci)")
    parser.add_argument("--papers", nargs="+", metavar="SLUG", help="papers to build (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every measurement (default: 3)")
    parser.add_argument(
        "--changed", metavar="SLUG", help="paper whose code and markdown are edited (default: the first paper)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repetition on two papers scaffolded by `reprobook new`, to test this script in a few minutes",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=REPO,
        help="folder under which book/benchmarks.md, its figure and benchmarks/results/*.json are written "
        "(default: the repository)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="folder in which a new folder for the project copies and logs is made (default: the system temporary folder)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder after the run")
    parser.add_argument(
        "--execution",
        choices=["workers", "process"],
        default="workers",
        help="how reprobook executes notebooks: long-lived workers on kernels started ahead of time (default), "
        "or a new process and kernel per notebook (the way before the workers existed)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="JSON",
        help="results file of an earlier run (e.g. with --execution process) to show beside this one on the page",
    )
    parser.add_argument(
        "--command-timeout", type=float, default=3600.0, help="seconds before one timed command is stopped"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat} must be at least 1")
    if args.quick and args.papers:
        parser.error("--quick builds its own scaffolded papers; leave out --papers")
    if args.before is not None and not args.before.is_file():
        parser.error(f"--before {args.before}: file not found; give a JSON file from benchmarks/results/")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the page, the figure and the JSON."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    load_start = os.getloadavg()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    # A new folder of its own, even inside --work-dir, so that removing it never removes anything else.
    work = Path(tempfile.mkdtemp(prefix="reprobook-bench-", dir=args.work_dir))

    try:
        if args.quick:
            source, slugs, repeat = make_quick_source(work, args.command_timeout), list(QUICK_PAPERS), 1
        else:
            source, repeat = REPO, args.repeat
            known = list_papers(REPO)
            slugs = args.papers or known
            unknown = [slug for slug in slugs if slug not in known]
            if unknown:
                print(
                    f"build_times: error: unknown papers {', '.join(unknown)}; known: {', '.join(known)}",
                    file=sys.stderr,
                )
                return 2
        changed = args.changed or slugs[0]
        if changed not in slugs:
            print(
                f"build_times: error: --changed {changed} is not among the papers built: {', '.join(slugs)}",
                file=sys.stderr,
            )
            return 2
        runs = []
        for repetition in range(repeat):
            logger.info("repetition %d of %d", repetition + 1, repeat)
            runs.append(
                run_repetition(
                    source, slugs, args.profile, changed, work, repetition, args.command_timeout, args.execution
                )
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            logger.info("work folder kept at %s", work)

    results: dict[str, Any] = {
        "started": started,
        "settings": {
            "profile": args.profile,
            "papers": slugs,
            "changed": changed,
            "repeat": repeat,
            "quick": args.quick,
            "parallel_jobs": PARALLEL_JOBS,
            "execution": args.execution,
        },
        "machine": describe_machine(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "runs": runs,
    }
    results.update(summarise(runs, changed))

    execution = results["measurements"]
    serial, parallel = execution["cold_jobs1_execution"]["median"], execution["cold_jobs2_execution"]["median"]
    results["parallel_efficiency"] = serial / (PARALLEL_JOBS * parallel) if serial and parallel else None

    if args.before is not None:
        earlier = json.loads(args.before.read_text())
        results["before"] = {
            "file": args.before.name,
            "settings": earlier.get("settings", {}),
            "load_average": earlier.get("load_average"),
            "measurements": earlier["measurements"],
            "targets": earlier["targets"],
        }
    print_tables(results)
    paths = write_outputs(results, args.output_dir)
    print(f"\nwrote {paths['page']}, {paths['figure']} and {paths['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
