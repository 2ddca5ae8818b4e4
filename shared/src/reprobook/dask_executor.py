"""Run notebook executions on a Dask cluster (``distributed``).

:class:`DaskExecutor` submits :func:`reprobook.execute.execute_task` to a Dask scheduler. With an
address it joins an existing cluster, and every task then carries the notebook, its parameters
and the paper folder's files, so workers need only the project's environment and no shared
filesystem. Without an address it starts a ``LocalCluster`` on this machine (one single-threaded
worker process per core, listening on 127.0.0.1).

Failures on the cluster:

- A task that raises on a worker (outside the notebook, which :func:`execute_task` reports as an
  outcome) is run once more (``retries=1``).
- A task whose worker dies is moved to another worker by the scheduler until it has been on
  ``distributed.scheduler.allowed-failures`` + 1 workers that died (Dask's default is 3; the
  ``LocalCluster`` started here sets 1, so one retry). Then ``future.result()`` raises
  ``KilledWorker``, which :func:`reprobook.runner.execute_papers` records as ``died``.

NOTE: a worker killed with SIGKILL leaves its scratch folder in the temporary directory. On Linux
the notebook's child process dies with it (see ``execute._die_with_parent``) and the kernel then
exits on its own; elsewhere the child runs until the notebook ends.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from .execute import ExecutionTask, execute_task
from .executors import DEFAULT_CONNECT_TIMEOUT, ExecutorError

logger = logging.getLogger(__name__)

LOCAL_ALLOWED_FAILURES = 1
"""Workers that may die under one task of the ``LocalCluster`` before it is reported as died,
beyond the first: 1 means one retry."""

CHECKED_PACKAGES = (
    "reprobook",
    "papermill",
    "nbclient",
    "nbformat",
    "ipykernel",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "torch",
    "scikit-learn",
    "cloudpickle",
    "dask",
    "distributed",
)
"""Packages whose versions must be the same on this machine and on every worker: the cache key
is computed here, so a worker with other versions would store results under the wrong key."""


class DaskExecutor:
    """Sends execution tasks to a Dask cluster and returns Dask futures.

    Parameters
    ----------
    address : str, optional
        Scheduler address such as ``tcp://scheduler.example.org:8786``. When None, a
        ``LocalCluster`` with ``jobs`` single-threaded worker processes is started and closed
        with the executor.
    jobs : int, optional
        Workers of the ``LocalCluster`` (default: one per core). Ignored with ``address``.
    connect_timeout : float
        Seconds to wait for the scheduler.

    Raises
    ------
    ExecutorError
        When the scheduler cannot be reached within ``connect_timeout``, or a worker's package
        versions differ from this machine's (see :data:`CHECKED_PACKAGES`).
    """

    def __init__(
        self, address: str | None = None, jobs: int | None = None, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    ) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.address = address
        self._cluster: Any = None
        if address is None:
            # A LocalCluster's workers see this machine's files, so tasks carry paths, not files.
            self.remote = False
            workers = jobs or os.cpu_count() or 1
            with dask.config.set({"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES}):
                self._cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            self._client = Client(self._cluster)
            logger.info("started a Dask LocalCluster with %d workers at %s", workers, self._cluster.scheduler_address)
        else:
            self.remote = True
            try:
                self._client = Client(address, timeout=connect_timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ExecutorError(
                    f"cannot connect to the Dask scheduler at {address} within {connect_timeout:g} s ({exc}); "
                    "check the address and that the scheduler is running"
                ) from None
            logger.info("connected to the Dask scheduler at %s", address)
        try:
            self._check_versions()
        except ExecutorError:
            self.close()
            raise
        threads = sum(self._client.nthreads().values())
        if threads == 0:
            logger.warning("the Dask scheduler at %s has no workers yet; tasks wait until one joins", address)
        self.jobs = max(threads, 1)

    def submit(self, task: ExecutionTask) -> Any:
        """Send a task to the cluster and return a ``distributed.Future`` of its ExecutionOutcome."""
        key = f"reprobook-{task.slug}-{uuid.uuid4().hex}"
        return self._client.submit(execute_task, task, key=key, pure=False, retries=1)

    def close(self) -> None:
        """Disconnect from the scheduler, and stop the ``LocalCluster`` when this executor started it."""
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def _check_versions(self) -> None:
        """Raise when a connected worker has other versions of :data:`CHECKED_PACKAGES` than this machine.

        NOTE: only workers connected now are checked, so a worker that joins later (an adaptive
        cluster) is not. The ``reprobook`` version does not change with its source, so an edited
        package on a worker goes unnoticed.
        """
        versions = self._client.get_versions(packages=list(CHECKED_PACKAGES))
        local = versions["client"]["packages"]
        problems = []
        for worker, info in sorted(versions["workers"].items()):
            if not isinstance(info, dict) or "packages" not in info:
                continue
            remote = info["packages"]
            for package in ("python", *CHECKED_PACKAGES):
                if remote.get(package) != local.get(package):
                    problems.append(f"{worker}: {package} {remote.get(package)} (here {local.get(package)})")
        if problems:
            raise ExecutorError(
                "Dask workers run other package versions than this machine; install environment.yml on "
                "the workers: " + "; ".join(problems)
            )
