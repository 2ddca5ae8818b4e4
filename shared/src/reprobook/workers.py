"""Long-lived worker processes that execute notebooks on kernels started ahead of time.

Starting a notebook the simple way costs several seconds before its first cell: a new Python
process imports papermill, starts a kernel, and the kernel imports torch, pandas and seaborn.
:class:`WorkerPool` pays most of that once or out of the critical path:

- each worker is one process (``python -m reprobook.workers``) that imports papermill once and
  runs any number of notebooks, one at a time;
- each worker keeps one kernel ready, started in an empty folder with the common heavy modules
  (:data:`PRELOAD_MODULES`) already imported; a task moves the kernel to the paper's folder
  and runs on it, so the notebook's own imports find the modules loaded;
- while a notebook runs, the worker starts the kernel for the next task if the pool says more
  tasks are waiting; otherwise it starts one only when the next task arrives, so idle workers
  at the end of a build take no CPU from the notebooks still running.

Every kernel runs exactly one notebook, so no state passes from one notebook to the next. The
guarantees of :func:`reprobook.execute.execute_task` hold: the parent process enforces each
task's time limit and, when it passes, kills the worker with its kernels and starts a new one;
a worker that dies (a notebook may kill it) gives a ``died`` outcome and is replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from .execute import (
    ExecutionOutcome,
    ExecutionTask,
    KernelNotFoundError,
    _die_with_parent,
    _host,
    _kill_tree,
    choose_kernel,
    kernel_environment,
    run_notebook,
)

logger = logging.getLogger(__name__)

PRELOAD_MODULES = ("numpy", "pandas", "matplotlib.pyplot", "seaborn", "torch", "scipy", "sklearn", "reprobook")
"""Modules a ready kernel imports before its task arrives; a missing one is skipped."""

_STARTUP_TIMEOUT = 120.0
STARTUP_LIMIT = 600.0
"""Seconds the build waits for a worker to have a kernel ready; a task's own limit starts after."""


# --------------------------------------------------------------------------- the worker process


def start_ready_kernel(kernel: str, cwd: str, preload: tuple[str, ...] = PRELOAD_MODULES) -> Any:
    """Start a kernel in ``cwd`` and import ``preload`` in it silently.

    Parameters
    ----------
    kernel : str
        Kernel name, as :func:`reprobook.execute.choose_kernel` returns it.
    cwd : str
        Working directory the kernel starts in (an empty folder; a task moves it).
    preload : tuple of str
        Modules to import; one that fails to import is skipped.

    Returns
    -------
    jupyter_client.AsyncKernelManager
        The running kernel; the caller shuts it down with :func:`shutdown_kernel`. It is the
        asynchronous manager because nbclient notices a kernel that dies only through it.
    """
    return asyncio.run(_start_ready_kernel(kernel, cwd, preload))


async def _start_ready_kernel(kernel: str, cwd: str, preload: tuple[str, ...]) -> Any:
    from jupyter_client.manager import AsyncKernelManager

    manager = AsyncKernelManager(kernel_name=kernel)
    await manager.start_kernel(cwd=cwd)
    if preload:
        lines = []
        for module in preload:
            lines += ["try:", f"    import {module}", "except Exception:", "    pass"]
        await run_silently(manager, "\n".join(lines))
    return manager


async def run_silently(manager: Any, code: str) -> dict:
    """Run ``code`` in a started kernel without an execution count or output; return the reply."""
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=_STARTUP_TIMEOUT)
        return await client.execute_interactive(code, silent=True, store_history=False, timeout=_STARTUP_TIMEOUT)
    finally:
        client.stop_channels()


def shutdown_kernel(manager: Any) -> None:
    """Stop a kernel from :func:`start_ready_kernel` at once; one that already died is fine."""
    try:
        asyncio.run(manager.shutdown_kernel(now=True))
    except Exception as exc:
        logger.debug("kernel shutdown: %s", exc)


def move_kernel(manager: Any, workdir: Path) -> None:
    """Make a ready kernel's working directory ``workdir``, as if it had been started there.

    A kernel started with ``python -m ipykernel_launcher`` imports from its working directory
    (``''`` is on its ``sys.path``), so changing directory also makes the paper's helper modules
    importable.
    """
    reply = asyncio.run(run_silently(manager, f"import os as _os; _os.chdir({str(workdir)!r}); del _os"))
    if reply["content"].get("status") != "ok":
        raise RuntimeError(f"could not change the kernel's directory to {workdir}: {reply['content']}")


def worker_main(channel: TextIO, requests: TextIO) -> None:
    """Serve tasks until ``requests`` closes.

    Each request is a JSON line ``{"task": path, "outcome": path, "prewarm": bool}``. The worker
    writes the line ``started`` to ``channel`` when the kernel is ready and the notebook starts,
    then the outcome as JSON to the outcome path, then the line ``done``.
    """
    import papermill  # noqa: F401  (imported once for every notebook this worker runs)

    neutral = tempfile.mkdtemp(prefix="reprobook-worker-")
    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-start")
    kernel_error: str | None = None
    try:
        kernel = choose_kernel()
    except KernelNotFoundError as exc:
        kernel, kernel_error = "", str(exc)
    ready: Future | None = None
    for line in requests:
        request = json.loads(line)
        task_path, outcome_path = Path(request["task"]), Path(request["outcome"])
        task = ExecutionTask(**json.loads(task_path.read_text()))
        manager = None
        if kernel_error is not None:
            channel.write("started\n")
            channel.flush()
            outcome = ExecutionOutcome("failed", None, 0.0, f"{task.slug}: {kernel_error}", None, "", _host())
        else:
            manager = _take_ready(ready, kernel, neutral)
            ready = starter.submit(start_ready_kernel, kernel, neutral) if request.get("prewarm") else None
            channel.write("started\n")
            channel.flush()
            if manager is None:  # the kernel could not be prepared: let papermill start one the usual way
                outcome = run_notebook(task, task_path.parent, kernel=kernel)
            else:
                try:
                    outcome = run_notebook(task, task_path.parent, kernel_manager=manager, kernel=kernel)
                except BaseException:
                    shutdown_kernel(manager)
                    raise
        outcome_path.write_text(json.dumps(asdict(outcome)))
        channel.write("done\n")
        channel.flush()
        if manager is not None:  # after the outcome is out, so the build does not wait for the shutdown
            shutdown_kernel(manager)
    if ready is not None:
        try:
            shutdown_kernel(ready.result())
        except Exception as exc:
            logger.debug("kernel start at exit: %s", exc)
    starter.shutdown(wait=True)


def _take_ready(ready: Future | None, kernel: str, neutral: str) -> Any:
    """Return the kernel started ahead of time, or start one now; None when starting fails."""
    try:
        return ready.result() if ready is not None else start_ready_kernel(kernel, neutral)
    except Exception as exc:
        logger.warning("could not prepare a kernel ahead of time (%s); starting one for the notebook", exc)
        return None


# --------------------------------------------------------------------------- the parent side


class Worker:
    """One worker process seen from the build: send a task, wait for its outcome or its time limit."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._log = tempfile.NamedTemporaryFile(prefix="reprobook-worker-", suffix=".log", delete=False)
        env = {**os.environ, **kernel_environment(threads)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reprobook.workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self._received = b""

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def run(self, task: ExecutionTask, prewarm: bool) -> ExecutionOutcome:
        """Run one task; a time-out or a dead worker comes back as an outcome (and ends this worker)."""
        start = time.monotonic()
        log_offset = os.path.getsize(self._log.name)
        with tempfile.TemporaryDirectory(prefix=f"reprobook-{task.slug}-") as scratch_name:
            scratch = Path(scratch_name)
            task_file, outcome_file, partial = (
                scratch / "task.json",
                scratch / "outcome.json",
                scratch / "partial.ipynb",
            )
            task_file.write_text(json.dumps(asdict(task)))
            request = json.dumps({"task": str(task_file), "outcome": str(outcome_file), "prewarm": prewarm})
            started = answered = False
            notebook_start = start
            try:
                assert self.process.stdin is not None and self.process.stdout is not None
                self.process.stdin.write(request.encode() + b"\n")
                self.process.stdin.flush()
                started = self._expect("started", STARTUP_LIMIT)
                notebook_start = time.monotonic()
                answered = started and self._expect("done", task.timeout)
            except (BrokenPipeError, OSError) as exc:
                logger.debug("worker pipe: %s", exc)
            seconds = time.monotonic() - start
            if answered and outcome_file.is_file():
                outcome = ExecutionOutcome(**json.loads(outcome_file.read_text()))
                outcome.seconds = seconds
                return outcome
            timed_out = self.alive() and time.monotonic() - notebook_start >= task.timeout
            if self.alive() and not started:
                logger.warning(
                    "%s: no kernel ready after %g s; stopping worker %d", task.slug, STARTUP_LIMIT, self.process.pid
                )
                self.kill()
                return ExecutionOutcome(
                    "died",
                    None,
                    seconds,
                    f"{task.slug}: no kernel was ready after {STARTUP_LIMIT:g} s; the worker was stopped",
                    host=_host(),
                )
            self.kill()
            notebook = partial.read_text() if partial.is_file() else None
            if timed_out:
                logger.warning("%s: timed out after %g s; stopped worker %d", task.slug, task.timeout, self.process.pid)
                return ExecutionOutcome(
                    "timed-out",
                    notebook,
                    seconds,
                    f"{task.slug}: timed out after {task.timeout:g} s; the run was stopped",
                    kernel=_kernel_name(),
                    host=_host(),
                )
            tail = self._log_tail(log_offset)
            logger.warning("%s: worker %d ended with status %s", task.slug, self.process.pid, self.process.returncode)
            return ExecutionOutcome(
                "died",
                notebook,
                seconds,
                f"{task.slug}: the executing process ended with status {self.process.returncode}: {tail}",
                host=_host(),
            )

    def _expect(self, word: str, limit: float) -> bool:
        """Wait up to ``limit`` seconds for the line ``word`` from the worker; False on time-out or exit.

        The pipe is read unbuffered, so that two lines arriving together are both seen.
        """
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + limit
        while b"\n" not in self._received:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return False
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            self._received += chunk
        line, self._received = self._received.split(b"\n", 1)
        return line.decode(errors="replace").strip() == word

    def _log_tail(self, offset: int) -> str:
        try:
            with open(self._log.name, errors="replace") as handle:
                handle.seek(offset)
                lines = handle.read().strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-5:])

    def kill(self) -> None:
        """Stop the worker and every kernel it started."""
        import psutil

        _kill_tree(psutil, self.process.pid)
        self.process.wait()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to finish (it shuts its kernels down), then make sure it has."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


def _kernel_name() -> str:
    try:
        return choose_kernel()
    except KernelNotFoundError:
        return ""


class WorkerPool:
    """``jobs`` worker threads, each owning one :class:`Worker` process, behind a future-returning ``submit``.

    Parameters
    ----------
    jobs : int
        Notebooks that run at once.
    prewarm : bool
        Start the next task's kernel while a notebook runs, when tasks are waiting. Off, every
        kernel is started when its task arrives.
    """

    def __init__(self, jobs: int, prewarm: bool = True) -> None:
        self.jobs = jobs
        self.prewarm = prewarm
        self._threads = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="reprobook-worker")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._waiting = 0
        self._warming = 0
        self._workers: list[Worker] = []

    def submit(self, task: ExecutionTask) -> Future:
        """Queue a task and return a future of its :class:`ExecutionOutcome`."""
        with self._lock:
            self._waiting += 1
        return self._threads.submit(self._run, task)

    def _run(self, task: ExecutionTask) -> ExecutionOutcome:
        worker: Worker | None = getattr(self._local, "worker", None)
        with self._lock:
            self._waiting -= 1
            if getattr(self._local, "warmed", False):
                self._warming -= 1
            prewarm = self.prewarm and self._waiting > self._warming
            if prewarm:
                self._warming += 1
        if worker is None or not worker.alive() or worker.threads != task.threads:
            if worker is not None:
                worker.close()
            worker = Worker(task.threads)
            self._local.worker = worker
            with self._lock:
                self._workers.append(worker)
        outcome = worker.run(task, prewarm)
        self._local.warmed = prewarm and worker.alive()
        if prewarm and not worker.alive():
            with self._lock:
                self._warming -= 1
        return outcome

    def close(self) -> None:
        """Stop every worker and its kernels, then the threads.

        The workers are stopped first because each is tied to the thread that started it: it is
        killed when that thread ends. A task still running when ``close`` is called ends as
        ``died``.
        """
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.close()
        self._threads.shutdown(wait=True, cancel_futures=True)


def _main() -> None:
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING)
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not reach the channel
    worker_main(channel, sys.stdin)


if __name__ == "__main__":
    _main()
