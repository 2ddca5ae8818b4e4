"""The ``build`` pipeline: validate, execute what is stale, copy chapters, write pages, render."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import book
from .cache import Cache
from .claims import claim_from_yaml, error_record
from .project import get_paper, list_papers
from .runner import DEFAULT_TIMEOUTS, LocalExecutor, RunError, RunRecord, execute_papers, prepare_run

logger = logging.getLogger(__name__)

RESULTS_DIR = Path("_build") / "reprobook"


class BuildLockedError(RuntimeError):
    """Another build holds the project's build lock."""


@contextmanager
def build_lock(root: Path):
    """Hold ``.reprobook/build.lock`` for the duration of a build; a second build fails at once."""
    path = root / ".reprobook" / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise BuildLockedError(
            f"another build is running ({holder}); wait for it to finish, or stop it, then build again"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class Progress:
    """A tqdm progress bar counting done, running, queued, cached and failed notebooks.

    Submitted notebooks beyond the executor's ``slots`` (its parallel jobs or workers) are
    counted as queued, since the executor starts them only as others finish.
    """

    def __init__(self, total: int, enabled: bool = True, slots: int | None = None) -> None:
        from tqdm import tqdm

        self.counts = Counter()
        self.slots = slots
        self.bar = tqdm(total=total, unit="nb", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self._refresh()

    def _refresh(self) -> None:
        c = self.counts
        outstanding = c["submitted"]
        running = outstanding if self.slots is None else min(outstanding, self.slots)
        self.bar.set_postfix_str(
            f"done {c['done']} running {running} queued {outstanding - running} cached {c['cached']} "
            f"failed {c['failed']}",
            refresh=True,
        )

    def __call__(self, event: str, item: Any) -> None:
        if event == "start":
            self.counts["submitted"] += 1
        else:
            record: RunRecord = item
            if record.status == "cached":
                self.counts["cached"] += 1
            else:
                self.counts["submitted"] -= 1
                if not record.ok:
                    self.counts["failed"] += 1
                    logger.error("%s", record.error)
            self.counts["done"] += 1
            self.bar.update(1)
        self._refresh()

    def close(self) -> None:
        self.bar.close()


@dataclass
class BuildResult:
    """Outcome of a build: the report (as written to JSON) and the render's exit status."""

    report: dict[str, Any]
    render_status: int | None
    render_log: str = ""

    @property
    def ok(self) -> bool:
        """True when every notebook ran and the book rendered."""
        return self.report["failed"] == 0 and self.render_status in (0, None)


def build(
    root: Path,
    profile: str = "book",
    jobs: int | None = None,
    only: Sequence[str] = (),
    force: bool = False,
    executor: Any | None = None,
    render: bool = True,
    progress: bool = True,
    timeout: float | None = None,
) -> BuildResult:
    """Execute every stale paper at ``profile`` and render the book.

    A failing paper does not stop the others: its chapter shows the error and its claims read
    ``error``. See :func:`reprobook.runner.execute_papers` for the cache rules.
    """
    slugs = list(only) if only else list_papers(root)
    for slug in slugs:
        get_paper(root, slug)
    start = time.monotonic()
    with build_lock(root):
        owned = executor is None
        executor = executor or LocalExecutor(jobs)
        try:
            records = _run_all(root, slugs, profile, executor, force, progress, timeout)
        finally:
            if owned:
                executor.close()
        report = _finish(root, records, profile, executor, time.monotonic() - start)
        render_status, render_log = None, ""
        if render:
            render_status, render_log = book.render_if_changed(root)
            (root / RESULTS_DIR / "render.log").write_text(render_log)
    report["render_status"] = render_status
    (root / RESULTS_DIR / "build-report.json").write_text(json.dumps(report, indent=1) + "\n")
    return BuildResult(report, render_status, render_log)


def _run_all(root, slugs, profile, executor, force, progress, timeout) -> list[RunRecord]:
    prepared, invalid = [], []
    for slug in slugs:
        try:
            prepared.append(prepare_run(root, slug, profile))
        except RunError as exc:
            logger.error("%s", exc)
            invalid.append(_invalid_record(root, slug, profile, str(exc)))
    bar = Progress(len(prepared), enabled=progress, slots=getattr(executor, "jobs", None))
    try:
        records = execute_papers(
            prepared,
            Cache(root / ".reprobook" / "cache"),
            executor,
            lambda p: timeout or DEFAULT_TIMEOUTS.get(p, 3600.0),
            force=force,
            on_event=bar,
        )
    finally:
        bar.close()
    return records + invalid


def _invalid_record(root: Path, slug: str, profile: str, error: str) -> RunRecord:
    claims = []
    try:
        meta = get_paper(root, slug).meta
        claims = [error_record(claim_from_yaml(raw), error) for raw in meta["claims"]]
    except Exception as exc:  # paper.yaml itself is broken: the chapter shows that error
        logger.debug("%s: no claims readable: %s", slug, exc)
    return RunRecord(slug, profile, "invalid", 0.0, {}, claims, error=error)


def _finish(root: Path, records: list[RunRecord], profile: str, executor: Any, wall: float) -> dict[str, Any]:
    metas = book.paper_metas(root)
    book.write_toc(root)
    all_claims: dict[str, list[dict]] = {}
    previous = _previous_claims(root)
    ran = {r.slug for r in records}
    for record in records:
        meta = metas.get(record.slug) or {
            "slug": record.slug,
            "title": record.slug,
            "authors": [],
            "year": "",
            "venue": "",
            "arxiv": "",
        }
        book.write_chapter(root, record.slug, book.chapter_notebook(meta, record))
        all_claims[record.slug] = record.claims
    for slug, meta in metas.items():
        if slug in ran:
            continue
        if slug in previous:
            all_claims[slug] = previous[slug]
        chapter = root / "book" / "papers" / f"{slug}.ipynb"
        if not chapter.is_file():
            note = "This chapter has not been executed yet. Run `reprobook build` to execute it."
            book.write_chapter(root, slug, book.placeholder_notebook(meta, note))
    counts = Counter(r.status for r in records)
    report = {
        "profile": profile,
        "jobs": getattr(executor, "jobs", None),
        "executor": type(executor).__name__,
        "wall_seconds": wall,
        "counts": dict(counts),
        "failed": sum(1 for r in records if not r.ok),
        "papers": [r.report_entry() for r in sorted(records, key=lambda r: r.slug)],
    }
    results = root / RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True)
    flat = [{"paper": slug, **c} for slug in sorted(all_claims) for c in all_claims[slug]]
    (results / "claims.json").write_text(json.dumps(flat, indent=1) + "\n")
    book.write_generated_pages(root, metas, all_claims, report)
    return report


def _previous_claims(root: Path) -> dict[str, list[dict]]:
    path = root / RESULTS_DIR / "claims.json"
    if not path.is_file():
        return {}
    try:
        flat = json.loads(path.read_text())
    except ValueError:
        return {}
    grouped: dict[str, list[dict]] = {}
    for record in flat:
        paper = record.pop("paper", None)
        if paper:
            grouped.setdefault(paper, []).append(record)
    return grouped
