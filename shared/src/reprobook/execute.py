"""Execute one notebook with papermill in a child process, with a hard time limit.

:func:`execute_task` is what every executor runs (the local pool and Dask workers alike). It
starts ``python -m reprobook.execute`` in a new process, which runs papermill's Python API on
a fresh kernel; when the limit passes, the child, the kernel and everything they started are
killed, so a kernel that ignores interrupts cannot hold a worker.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATUSES = ("ok", "failed", "timed-out", "died")
KERNEL_ENV = "REPROBOOK_KERNEL"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass
class ExecutionTask:
    """Everything a worker needs to run one notebook, with no shared filesystem assumed.

    Attributes
    ----------
    slug : str
        The paper.
    notebook_json : str
        The source notebook.
    parameters : dict
        Resolved parameters injected by papermill.
    folder : str or None
        Working directory on this machine (the paper folder). When None, ``files`` are written
        to a scratch folder that becomes the working directory.
    files : dict of str to str
        The paper folder's other files, base64-encoded, by relative path (remote runs only).
    timeout : float
        Seconds before the whole run is stopped.
    threads : int
        Thread count for the kernel's BLAS and torch.
    """

    slug: str
    notebook_json: str
    parameters: dict[str, Any]
    folder: str | None
    files: dict[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    threads: int = 1


@dataclass
class ExecutionOutcome:
    """Result of one execution.

    Attributes
    ----------
    status : str
        ``ok``, ``failed`` (a cell raised), ``timed-out`` or ``died`` (the kernel or the
        executing process ended unexpectedly).
    notebook_json : str or None
        The executed notebook, also when a cell failed.
    seconds : float
        Wall time of the execution.
    error : str or None
        What went wrong, naming the cell where known.
    cell : int or None
        Index of the failing cell in the executed notebook.
    kernel : str
        Name of the kernel that ran the notebook.
    host : str
        Host name of the machine that ran it.
    """

    status: str
    notebook_json: str | None
    seconds: float
    error: str | None = None
    cell: int | None = None
    kernel: str = ""
    host: str = ""


def encode_folder(folder: Path, skip: Path) -> dict[str, str]:
    """Return the files of a paper folder (except ``skip``) base64-encoded, for a remote task."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path != skip and "__pycache__" not in path.parts:
            files[str(path.relative_to(folder))] = base64.b64encode(path.read_bytes()).decode()
    return files


def kernel_environment(threads: int) -> dict[str, str]:
    """Return environment variables that pin a kernel to ``threads`` threads."""
    env = {name: str(threads) for name in _THREAD_VARS}
    env["REPROBOOK_THREADS"] = str(threads)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def execute_task(task: ExecutionTask) -> ExecutionOutcome:
    """Run a task in a child process and return its outcome.

    A cell that raises, a time-out and a dead kernel come back as outcomes, not exceptions.
    """
    import psutil

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"reprobook-{task.slug}-") as scratch_name:
        scratch = Path(scratch_name)
        task_file = scratch / "task.json"
        outcome_file = scratch / "outcome.json"
        task_file.write_text(json.dumps(asdict(task)))
        env = {**os.environ, **kernel_environment(task.threads)}
        command = [sys.executable, "-m", "reprobook.execute", str(task_file), str(outcome_file)]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            _, stderr = process.communicate(timeout=task.timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(psutil, process.pid)
            process.communicate()
            partial = scratch / "partial.ipynb"
            return ExecutionOutcome(
                "timed-out",
                partial.read_text() if partial.is_file() else None,
                time.monotonic() - start,
                f"{task.slug}: timed out after {task.timeout:g} s; the run was stopped",
                kernel=_kernel_name_hint(),
                host=_host(),
            )
        finally:
            _kill_tree(psutil, process.pid)
        if outcome_file.is_file():
            outcome = ExecutionOutcome(**json.loads(outcome_file.read_text()))
            outcome.seconds = time.monotonic() - start
            return outcome
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        partial = scratch / "partial.ipynb"
        return ExecutionOutcome(
            "died",
            partial.read_text() if partial.is_file() else None,
            time.monotonic() - start,
            f"{task.slug}: the executing process ended with status {process.returncode}: " + " | ".join(tail),
            host=_host(),
        )


def _kill_tree(psutil: Any, pid: int) -> None:
    """Kill a process and all its descendants, including kernels started in their own session."""
    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=5)


def _host() -> str:
    import socket

    return socket.gethostname()


def _kernel_name_hint() -> str:
    return choose_kernel()


class KernelNotFoundError(RuntimeError):
    """The kernel requested through ``REPROBOOK_KERNEL`` is not installed."""


def choose_kernel() -> str:
    """Return the kernel to run notebooks with.

    ``REPROBOOK_KERNEL`` names one explicitly; otherwise the project's ``reprobook`` kernel when
    it is registered, else ``python3`` (which ipykernel always provides for this interpreter).
    The notebook's own kernel metadata is ignored, because a notebook saved from another editor
    or environment may name a kernel that is not installed here.

    Raises
    ------
    KernelNotFoundError
        If ``REPROBOOK_KERNEL`` names a kernel that is not installed.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    requested = os.environ.get(KERNEL_ENV)
    if requested:
        if requested not in specs and requested != "python3":
            installed = ", ".join(sorted(specs)) or "none"
            raise KernelNotFoundError(
                f"kernel {requested!r} (from {KERNEL_ENV}) is not installed; installed kernels: {installed}. "
                f"Unset {KERNEL_ENV} or install it with `python -m ipykernel install --sys-prefix --name {requested}`"
            )
        return requested
    return "reprobook" if "reprobook" in specs else "python3"


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so a killed build leaves no orphans."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        logger.debug("prctl is unavailable; a killed build may leave this process running")


def _run_child(task_path: Path, outcome_path: Path) -> None:
    """Body of the child process: run papermill and write the outcome as JSON."""
    _die_with_parent()
    task = ExecutionTask(**json.loads(task_path.read_text()))
    outcome = run_notebook(task, task_path.parent)
    outcome_path.write_text(json.dumps(asdict(outcome)))


def prepare_workdir(task: ExecutionTask, scratch: Path) -> Path:
    """Return the task's working directory, writing a remote task's files under ``scratch``."""
    if task.folder is not None:
        return Path(task.folder)
    workdir = scratch / task.slug
    for relative, content in task.files.items():
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(content))
    workdir.mkdir(exist_ok=True)
    return workdir


def run_notebook(
    task: ExecutionTask, scratch: Path, kernel_manager: Any = None, kernel: str | None = None
) -> ExecutionOutcome:
    """Execute a task's notebook with papermill and return the outcome.

    Parameters
    ----------
    task : ExecutionTask
        The notebook, its parameters and its folder.
    scratch : Path
        A private folder; the notebook is saved to ``scratch/partial.ipynb`` after every cell, so
        a caller that stops a run that takes too long still has the cells that finished.
    kernel_manager : jupyter_client.AsyncKernelManager, optional
        A kernel already started by :func:`reprobook.workers.start_ready_kernel`; its working
        directory is moved to the task's folder before the first cell. When None, papermill starts a fresh kernel.
    kernel : str, optional
        Name of ``kernel_manager``'s kernel; chosen with :func:`choose_kernel` when None.

    Returns
    -------
    ExecutionOutcome
        A cell that raises and a kernel that dies come back as outcomes, not exceptions.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    workdir = prepare_workdir(task, scratch)
    source = scratch / "source.ipynb"
    source.write_text(task.notebook_json)
    partial = scratch / "partial.ipynb"
    start = time.monotonic()
    if kernel is None:
        try:
            kernel = choose_kernel()
        except KernelNotFoundError as exc:
            return ExecutionOutcome("failed", None, 0.0, f"{task.slug}: {exc}", None, "", _host())
    status, error, cell = "ok", None, None
    engine_options = {}
    try:
        if kernel_manager is not None:
            from .workers import move_kernel

            move_kernel(kernel_manager, workdir)
            engine_options["km"] = kernel_manager
        papermill.execute_notebook(
            str(source),
            str(partial),
            parameters=task.parameters,
            cwd=str(workdir),
            kernel_name=kernel,
            language="python",
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=True,
            **engine_options,
        )
    except PapermillExecutionError as exc:
        status = "failed"
        cell = _source_index(partial, exc.cell_index)
        first_line = exc.source.strip().splitlines()[0] if exc.source.strip() else ""
        error = f"{task.slug}: cell {cell} (`{first_line[:60]}`) raised {exc.ename}: {exc.evalue}"
    except Exception as exc:  # nbclient's DeadKernelError and start-up failures end here
        name = type(exc).__name__
        status = "died" if "Dead" in name else "failed"
        error = f"{task.slug}: {name}: {exc}"
    notebook_json = None
    if partial.is_file():
        nb = nbformat.read(partial, as_version=4)
        nb.metadata.setdefault("reprobook", {})["kernel"] = kernel
        notebook_json = nbformat.writes(nb)
        if status != "ok" and cell is None:
            executed_index = _last_executed_cell(nb)
            if executed_index is not None:
                cell = _source_index(partial, executed_index)
                first_line = (nb.cells[executed_index].source.strip().splitlines() or [""])[0]
                error = f"{error} while running cell {cell} (`{first_line[:60]}`)"
    return ExecutionOutcome(status, notebook_json, time.monotonic() - start, error, cell, kernel, _host())


def _source_index(executed_path: Path, executed_index: int) -> int:
    """Map a cell index of the executed notebook to the source notebook (papermill inserts one cell)."""
    import nbformat

    try:
        nb = nbformat.read(executed_path, as_version=4)
    except (OSError, ValueError):
        return executed_index
    for index, cell in enumerate(nb.cells[:executed_index]):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            return executed_index - 1 if index < executed_index else executed_index
    return executed_index


def _last_executed_cell(nb: Any) -> int | None:
    last = None
    for index, cell in enumerate(nb.cells):
        papermill_meta = cell.get("metadata", {}).get("papermill", {})
        if papermill_meta.get("start_time"):
            last = index
    return last


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    _run_child(Path(sys.argv[1]), Path(sys.argv[2]))
