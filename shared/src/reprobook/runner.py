"""Run papers: validate parameters, use the cache, execute, collect claims.

:func:`run_paper` runs one paper into an output folder; :func:`execute_papers` runs several
through an executor and is what ``build`` and ``sweep`` use.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .cache import Cache, cache_key
from .claims import Claim, ClaimResult, ClaimsError, claim_from_yaml, claims_from_notebook, error_record
from .execute import ExecutionOutcome, ExecutionTask, encode_folder, execute_task
from .params import ParameterError, resolve_parameters
from .project import PaperFolder, ProjectError, get_paper
from .stats import evaluate_rule

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUTS = {"ci": 300.0, "book": 900.0, "large": 86400.0}
RUN_STATUSES = ("executed", "cached", "failed", "timed-out", "died", "invalid")


class RunError(RuntimeError):
    """A run could not start: unknown paper or profile, or invalid parameters."""


@dataclass
class RunRecord:
    """What happened to one paper in a run or build.

    Attributes
    ----------
    slug, profile : str
        The paper and the profile it ran at.
    status : str
        One of :data:`RUN_STATUSES`.
    seconds : float
        Execution wall time (the original run's time for a cache hit).
    parameters : dict
        The resolved parameters.
    claims : list of dict
        One record per claim of ``paper.yaml``.
    key : str
        Cache key.
    error : str or None
        The failure, naming paper and cell, when there was one.
    kernel, host : str
        Which kernel and machine executed the notebook.
    notebook_json : str or None
        The executed notebook (not written to reports).
    """

    slug: str
    profile: str
    status: str
    seconds: float
    parameters: dict[str, Any]
    claims: list[dict[str, Any]]
    key: str = ""
    error: str | None = None
    kernel: str = ""
    host: str = ""
    notebook_json: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the notebook ran to the end (now or in the cached run)."""
        return self.status in ("executed", "cached")

    def report_entry(self) -> dict[str, Any]:
        """Return the JSON-ready entry of the build report (without the notebook)."""
        entry = asdict(self)
        entry.pop("notebook_json")
        entry.pop("claims")
        entry["parameters"] = json.loads(json.dumps(self.parameters, default=repr))
        entry["verdicts"] = {c["claim"]: c["verdict"] for c in self.claims}
        return entry


@dataclass
class Prepared:
    """A validated run, ready to execute or to take from the cache."""

    paper: PaperFolder
    profile: str
    parameters: dict[str, Any]
    notebook: Any
    key: str


def prepare_run(root: Path, slug: str, profile: str = "book", cli_values: Mapping[str, str] | None = None) -> Prepared:
    """Validate a paper, its profile and ``-p`` values before any kernel starts.

    Raises
    ------
    RunError
        Naming the paper, the parameter or profile, and the fix.
    """
    try:
        paper = get_paper(root, slug)
        problems = paper.check()
        if problems:
            raise RunError("; ".join(problems))
        if profile not in paper.profiles:
            raise RunError(f"{slug}: unknown profile {profile!r}; profiles: {', '.join(paper.profiles)}")
        parameters = resolve_parameters(
            paper.parameters, paper.profiles[profile], cli_values or {}, f"{slug} ({paper.notebook_path.name})"
        )
        notebook = paper.read_notebook()
    except (ProjectError, ParameterError, ClaimsError) as exc:
        raise RunError(str(exc)) from exc
    key = cache_key(notebook, parameters, paper.folder, paper.notebook_path, root)
    return Prepared(paper, profile, parameters, notebook, key)


def make_task(prepared: Prepared, timeout: float, threads: int = 1, remote: bool = False) -> ExecutionTask:
    """Build the execution task; ``remote`` ships the paper's files instead of a local path."""
    paper = prepared.paper
    return ExecutionTask(
        slug=paper.slug,
        notebook_json=nbformat.writes(prepared.notebook),
        parameters=prepared.parameters,
        folder=None if remote else str(paper.folder),
        files=encode_folder(paper.folder, paper.notebook_path) if remote else {},
        timeout=timeout,
        threads=threads,
    )


def collect_claims(paper: PaperFolder, outcome_status: str, notebook_json: str | None, error: str | None) -> list[dict]:
    """Return one claims record per claim of ``paper.yaml`` from an executed notebook.

    A run that did not finish gives ``error`` for every testable claim, so a stale or partial
    verdict never shows as a result.
    """
    claims: list[Claim] = [claim_from_yaml(raw) for raw in paper.meta["claims"]]
    recorded = {}
    if outcome_status == "ok" and notebook_json is not None:
        recorded = claims_from_notebook(nbformat.reads(notebook_json, as_version=4))
    records = []
    for claim in claims:
        if claim.rule["kind"] == "untestable":
            records.append(ClaimResult(claim, evaluate_rule(claim.rule, {})).to_dict())
        elif outcome_status != "ok":
            records.append(error_record(claim, error or f"the notebook did not finish ({outcome_status})"))
        elif claim.id in recorded:
            record = dict(recorded[claim.id])
            record.pop("columns", None)
            records.append(record)
        else:
            records.append(error_record(claim, "the notebook finished without recording this claim"))
    return records


def record_from_outcome(prepared: Prepared, outcome: ExecutionOutcome) -> RunRecord:
    """Turn an execution outcome into a run record with its claims."""
    status = {"ok": "executed", "failed": "failed", "timed-out": "timed-out", "died": "died"}[outcome.status]
    claims = collect_claims(prepared.paper, outcome.status, outcome.notebook_json, outcome.error)
    notebook_json = outcome.notebook_json
    if notebook_json is not None:
        # The same assembly as a cache hit gets, so that the next build that reads this run from
        # the cache writes an identical chapter (papermill stamps times on markdown cells too).
        notebook_json = nbformat.writes(merge_markdown(prepared.notebook, nbformat.reads(notebook_json, as_version=4)))
    return RunRecord(
        prepared.paper.slug,
        prepared.profile,
        status,
        outcome.seconds,
        prepared.parameters,
        claims,
        prepared.key,
        outcome.error,
        outcome.kernel,
        outcome.host,
        notebook_json,
    )


def record_from_cache(prepared: Prepared, hit: Mapping[str, Any]) -> RunRecord:
    """Turn a cache hit into a run record; the notebook is re-assembled with the current markdown."""
    meta = hit["meta"]
    executed = nbformat.read(hit["notebook"], as_version=4)
    notebook = merge_markdown(prepared.notebook, executed)
    return RunRecord(
        prepared.paper.slug,
        prepared.profile,
        "cached",
        float(meta.get("seconds", 0.0)),
        prepared.parameters,
        hit["claims"],
        prepared.key,
        None,
        meta.get("kernel", ""),
        meta.get("host", ""),
        nbformat.writes(notebook),
    )


def merge_markdown(source: Any, executed: Any) -> Any:
    """Return the executed notebook with the markdown cells of the current source notebook.

    Code cells are identical by construction of the cache key, so the executed code cells (and
    papermill's injected-parameters cell) are kept and the source's markdown is put around them.
    """
    executed_code = [c for c in executed.cells if c.cell_type == "code"]
    injected = [c for c in executed_code if "injected-parameters" in c.metadata.get("tags", [])]
    plain_code = [c for c in executed_code if c not in injected]
    source_code = [c for c in source.cells if c.cell_type == "code"]
    if len(plain_code) != len(source_code):
        return executed
    merged = nbformat.v4.new_notebook(metadata=executed.metadata)
    code_iter = iter(plain_code)
    for cell in source.cells:
        if cell.cell_type == "code":
            merged.cells.append(next(code_iter))
            if "parameters" in cell.metadata.get("tags", []):
                merged.cells.extend(injected)
        else:
            merged.cells.append(cell)
    return merged


def store(cache: Cache, record: RunRecord) -> None:
    """Store a successful run in the cache; failures are never cached."""
    if record.status != "executed" or record.notebook_json is None:
        return
    meta = {
        "slug": record.slug,
        "profile": record.profile,
        "seconds": record.seconds,
        "kernel": record.kernel,
        "host": record.host,
        "created": time.time(),
    }
    cache.put(record.key, record.notebook_json, record.claims, meta)


EXECUTION_ENV = "REPROBOOK_EXECUTION"
EXECUTION_MODES = ("workers", "process")


class LocalExecutor:
    """Runs tasks on this machine, ``jobs`` at a time.

    Parameters
    ----------
    jobs : int, optional
        Notebooks that run at once (default: one per core).
    mode : {"workers", "process"}, optional
        ``workers`` (the default) runs notebooks in long-lived worker processes on kernels
        started ahead of time (:mod:`reprobook.workers`). ``process`` starts a new process and
        kernel for every notebook (:func:`reprobook.execute.execute_task`). That is slower, but
        shares nothing between notebooks. The environment variable ``REPROBOOK_EXECUTION`` sets
        the default.

    Raises
    ------
    ValueError
        For an unknown mode.
    """

    remote = False

    def __init__(self, jobs: int | None = None, mode: str | None = None) -> None:
        self.jobs = jobs or os.cpu_count() or 1
        self.mode = mode or os.environ.get(EXECUTION_ENV) or "workers"
        if self.mode not in EXECUTION_MODES:
            raise ValueError(
                f"execution mode {self.mode!r} (from {EXECUTION_ENV} or the caller) is unknown; "
                f"use one of {', '.join(EXECUTION_MODES)}"
            )
        if self.mode == "workers":
            from .workers import WorkerPool

            self._workers: WorkerPool | None = WorkerPool(self.jobs)
            self._pool = None
        else:
            self._workers = None
            self._pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="reprobook")

    def submit(self, task: ExecutionTask) -> Future:
        """Start a task and return a future of its :class:`ExecutionOutcome`."""
        if self._workers is not None:
            return self._workers.submit(task)
        return self._pool.submit(execute_task, task)

    def close(self) -> None:
        """Wait for running tasks and release the workers."""
        if self._workers is not None:
            self._workers.close()
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)


def execute_papers(
    prepared: Iterable[Prepared],
    cache: Cache,
    executor: Any,
    timeout_for: Callable[[str], float],
    force: bool = False,
    on_event: Callable[[str, RunRecord | Prepared], None] | None = None,
) -> list[RunRecord]:
    """Run prepared papers: cache hits first, then the rest through ``executor``.

    Parameters
    ----------
    prepared : iterable of Prepared
        Validated runs.
    cache : Cache
        Where results are read and stored.
    executor : LocalExecutor or compatible
        Has ``submit(task) -> future`` and a ``remote`` attribute.
    timeout_for : callable
        Maps a profile to a time limit in seconds.
    force : bool
        Ignore cache hits and execute everything.
    on_event : callable, optional
        Called with ``("start", prepared)`` and ``("done", record)`` for progress display.

    Returns
    -------
    list of RunRecord
        In the order of ``prepared``.
    """
    prepared = list(prepared)
    records: dict[int, RunRecord] = {}
    futures: dict[Future, int] = {}
    for index, item in enumerate(prepared):
        hit = None if force else cache.get(item.key)
        if hit is not None:
            records[index] = record_from_cache(item, hit)
            if on_event:
                on_event("done", records[index])
            continue
        task = make_task(item, timeout_for(item.profile), remote=getattr(executor, "remote", False))
        if on_event:
            on_event("start", item)
        futures[executor.submit(task)] = index
    for future in _as_completed(futures):
        index = futures[future]
        item = prepared[index]
        try:
            outcome = future.result()
        except Exception as exc:  # a worker lost for good: report the paper, keep the others
            logger.error("%s: execution failed outside the notebook: %s", item.paper.slug, exc)
            outcome = ExecutionOutcome("died", None, 0.0, f"{item.paper.slug}: worker failed: {exc}")
        record = record_from_outcome(item, outcome)
        store(cache, record)
        records[index] = record
        if on_event:
            on_event("done", record)
    return [records[i] for i in range(len(prepared))]


def _as_completed(futures: Mapping[Any, int]) -> Iterable[Any]:
    if not futures:
        return []
    first = next(iter(futures))
    if isinstance(first, Future):
        from concurrent.futures import as_completed

        return as_completed(futures)
    from distributed import as_completed as dask_as_completed

    return dask_as_completed(list(futures))


def write_run_outputs(record: RunRecord, output_dir: Path) -> tuple[Path, Path]:
    """Write ``SLUG.ipynb`` and ``SLUG.claims.json`` into ``output_dir`` and return both paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    notebook_path = output_dir / f"{record.slug}.ipynb"
    claims_path = output_dir / f"{record.slug}.claims.json"
    if record.notebook_json is not None:
        _write_atomic(notebook_path, record.notebook_json)
    _write_atomic(claims_path, json.dumps(record.claims, indent=1, default=_nan_to_none))
    return notebook_path, claims_path


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return repr(value)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_paper(
    root: Path,
    slug: str,
    profile: str,
    cli_values: Mapping[str, str],
    output_dir: Path,
    executor: Any | None = None,
    force: bool = False,
    timeout: float | None = None,
) -> RunRecord:
    """Validate, run (or take from the cache) one paper, and write its notebook and claims.

    Raises
    ------
    RunError
        Before execution, for an unknown paper, profile or parameter.
    """
    prepared = prepare_run(root, slug, profile, cli_values)
    owned = executor is None
    executor = executor or LocalExecutor(jobs=1)
    try:
        [record] = execute_papers(
            [prepared],
            Cache(root / ".reprobook" / "cache"),
            executor,
            lambda p: timeout or DEFAULT_TIMEOUTS.get(p, 3600.0),
            force=force,
        )
    finally:
        if owned:
            executor.close()
    write_run_outputs(record, output_dir)
    return record
