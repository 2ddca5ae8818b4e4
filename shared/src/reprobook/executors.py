"""Executors: where :func:`reprobook.runner.execute_papers` sends notebook executions.

Two implementations share one interface, :class:`Executor`:

- :class:`LocalExecutor` runs notebooks on this machine, ``jobs`` at a time, in long-lived worker
  processes on kernels started ahead of time (:mod:`reprobook.workers`), or with
  ``REPROBOOK_EXECUTION=process`` in a new child process each;
- :class:`reprobook.dask_executor.DaskExecutor` sends the same tasks to a Dask cluster, either an
  existing one (a scheduler address) or a ``LocalCluster`` it starts on this machine.

Dask workers run :func:`reprobook.execute.execute_task`. Results come back to the calling process, which
writes the cache and the book, so a cluster run and a local run store the same records.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .execute import ExecutionTask
from .runner import LocalExecutor

EXECUTOR_KINDS = ("local", "dask")
DEFAULT_CONNECT_TIMEOUT = 5.0

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "EXECUTOR_KINDS",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "make_executor",
]


class ExecutorError(RuntimeError):
    """An executor could not start: an unreachable scheduler, or workers with other versions."""


@runtime_checkable
class Executor(Protocol):
    """The interface :func:`reprobook.runner.execute_papers` uses.

    Attributes
    ----------
    remote : bool
        True when workers may not see this machine's files: each task then carries the paper
        folder's files instead of its path.
    jobs : int
        How many notebooks run at once (for reports and progress).
    """

    remote: bool
    jobs: int

    def submit(self, task: ExecutionTask) -> Any:
        """Start a task and return a future whose ``result()`` is an :class:`ExecutionOutcome`."""
        ...

    def close(self) -> None:
        """Release the workers (and a cluster the executor started)."""
        ...


def make_executor(
    kind: str = "local",
    jobs: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Executor:
    """Create the executor for a command line's ``--executor``, ``--jobs`` and ``--scheduler``.

    Parameters
    ----------
    kind : {"local", "dask"}
        ``local`` is the process pool; ``dask`` uses ``scheduler``, or starts a ``LocalCluster``
        when ``scheduler`` is None.
    jobs : int, optional
        Parallel notebooks for the local pool, or workers of the ``LocalCluster`` (default: one
        per core). Not used with ``scheduler``: the cluster's workers set the parallelism.
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``tcp://scheduler.example.org:8786``.
        Implies ``kind="dask"``.
    connect_timeout : float
        Seconds to wait for the scheduler before :class:`ExecutorError` is raised.

    Raises
    ------
    ExecutorError
        For an invalid combination, an unreachable scheduler, or workers whose package
        versions differ from this machine's.
    """
    if kind not in EXECUTOR_KINDS:
        raise ExecutorError(f"unknown executor {kind!r}; use one of {', '.join(EXECUTOR_KINDS)}")
    if jobs is not None and jobs < 1:
        raise ExecutorError(f"jobs {jobs} must be at least 1")
    if scheduler is not None:
        if kind == "local":
            raise ExecutorError("--scheduler sends runs to a Dask cluster; drop --executor local or the address")
        if jobs is not None:
            raise ExecutorError("--jobs does not apply with --scheduler: the cluster's workers set the parallelism")
    if kind == "local" and scheduler is None:
        return LocalExecutor(jobs)

    from .dask_executor import DaskExecutor

    return DaskExecutor(scheduler, jobs=jobs, connect_timeout=connect_timeout)
