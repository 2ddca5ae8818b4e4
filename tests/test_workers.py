"""Long-lived workers on kernels started ahead of time: isolation, working directory, clean exit."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import psutil
import pytest

from reprobook.execute import ExecutionTask
from reprobook.runner import LocalExecutor
from reprobook.workers import WorkerPool

pytestmark = pytest.mark.slow


def task(folder: Path, slug: str, *cells: str, timeout: float = 120.0) -> ExecutionTask:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    folder.mkdir(parents=True, exist_ok=True)
    return ExecutionTask(slug, nbformat.writes(nb), {"seed": 1}, str(folder), timeout=timeout)


def outputs(notebook_json: str) -> str:
    nb = nbformat.reads(notebook_json, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def worker_processes() -> list[psutil.Process]:
    """Return the live worker processes below this test process (earlier tests may leave zombies)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and "reprobook.workers" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # ended or became a zombie while being read
            continue
    return found


def test_fresh_kernel_per_notebook(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    second.mkdir(parents=True)
    (second / "helper_module.py").write_text("VALUE = 42\n")
    pool = WorkerPool(jobs=1)
    try:
        first_future = pool.submit(
            task(first, "first", "leaked = 'from the first notebook'\nimport os\nprint(os.getpid())")
        )
        second_future = pool.submit(
            task(
                second,
                "second",
                "import os\nprint(os.getcwd())\nprint('leaked' in globals())",
                "import helper_module\nprint(helper_module.VALUE, seed)",
            )
        )
        first_outcome, second_outcome = first_future.result(timeout=300), second_future.result(timeout=300)

        assert len(worker_processes()) == 1  # both ran in the same worker process
    finally:
        pool.close()

    assert first_outcome.status == "ok", first_outcome.error
    assert second_outcome.status == "ok", second_outcome.error
    text = outputs(second_outcome.notebook_json)
    assert str(second) in text
    assert "False" in text
    assert "42 1" in text
    nb = nbformat.reads(second_outcome.notebook_json, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # the preparation left no execution count
    assert worker_processes() == []


def test_timeout_replaces_worker(tmp_path):
    pool = WorkerPool(jobs=1)
    try:
        slow = pool.submit(task(tmp_path / "slow", "slow", "import time\ntime.sleep(600)", timeout=5))
        after = pool.submit(task(tmp_path / "after", "after", "print('still here')"))
        stopped, fine = slow.result(timeout=300), after.result(timeout=300)
    finally:
        pool.close()
    assert stopped.status == "timed-out"
    assert "timed out after 5 s" in stopped.error
    assert stopped.notebook_json is not None  # the cells before the slow one are kept
    assert fine.status == "ok"
    assert "still here" in outputs(fine.notebook_json)


def test_notebook_that_kills_its_worker_is_reported(tmp_path):
    pool = WorkerPool(jobs=1)
    try:
        killer = pool.submit(task(tmp_path / "k", "killer", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"))
        later = pool.submit(task(tmp_path / "l", "later", "print('fine')"))
        killed, fine = killer.result(timeout=300), later.result(timeout=300)
    finally:
        pool.close()
    assert killed.status == "died"
    assert fine.status == "ok"


def test_unknown_execution_mode_is_named(monkeypatch):
    monkeypatch.setenv("REPROBOOK_EXECUTION", "threads")
    with pytest.raises(ValueError, match="execution mode 'threads'.*use one of workers, process"):
        LocalExecutor(1)


@pytest.mark.parametrize("mode", ["workers", "process"])
def test_both_modes_give_the_same_outputs(tmp_path, mode):
    executor = LocalExecutor(1, mode=mode)
    try:
        outcome = executor.submit(task(tmp_path / mode, mode, "import numpy as np\nprint(np.arange(3).sum())")).result(
            timeout=300
        )
    finally:
        executor.close()
    assert outcome.status == "ok"
    assert outputs(outcome.notebook_json).strip() == "3"
    assert os.path.isdir(tmp_path / mode)
