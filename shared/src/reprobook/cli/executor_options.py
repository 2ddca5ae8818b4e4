"""The options that choose where notebooks execute: ``--executor``, ``--jobs``, ``--scheduler``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ..executors import DEFAULT_CONNECT_TIMEOUT, EXECUTOR_KINDS, Executor, ExecutorError, make_executor
from .common import fail


def add_executor_arguments(parser: argparse.ArgumentParser, jobs: bool = True) -> None:
    """Add ``--executor``, ``--scheduler``, ``--connect-timeout`` and (when ``jobs``) ``--jobs`` to a verb."""
    parser.add_argument(
        "--executor",
        choices=EXECUTOR_KINDS,
        default=None,
        help="local: a process pool on this machine (default); dask: a Dask cluster, "
        "a LocalCluster with one single-threaded worker per core unless --scheduler is given",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="send the notebook executions to the Dask scheduler at ADDRESS, e.g. tcp://scheduler.example.org:8786",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds to wait for the Dask scheduler before giving up (default: {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    if jobs:
        parser.add_argument(
            "--jobs",
            type=int,
            default=None,
            help="parallel notebooks, or LocalCluster workers with --executor dask (default: one per core)",
        )


@contextmanager
def open_executor(args: argparse.Namespace, default_local: bool = False) -> Iterator[Executor | None]:
    """Yield the executor the options ask for and close it afterwards; exit with status 2 when it cannot start.

    With no ``--executor`` and no ``--scheduler``, yields None so that the library's own local
    default serves, unless ``default_local`` requests a :class:`LocalExecutor` with ``--jobs``.
    """
    jobs = getattr(args, "jobs", None)
    if args.executor is None and args.scheduler is None and not default_local:
        yield None
        return
    kind = args.executor or ("dask" if args.scheduler else "local")
    # Dask's own configuration sets its loggers to INFO; --log-level decides here.
    logging.getLogger("distributed").setLevel(logging.getLogger().getEffectiveLevel())
    try:
        executor = make_executor(kind, jobs=jobs, scheduler=args.scheduler, connect_timeout=args.connect_timeout)
    except ExecutorError as exc:
        fail(str(exc))
        raise AssertionError("unreachable") from exc
    try:
        yield executor
    finally:
        executor.close()
