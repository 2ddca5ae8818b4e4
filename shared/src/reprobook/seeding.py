"""One call that makes a notebook's randomness and threading reproducible."""

from __future__ import annotations

import logging
import os
import random

import numpy as np

logger = logging.getLogger(__name__)

THREADS_ENV = "REPROBOOK_THREADS"


def thread_count(default: int | None = None) -> int | None:
    """Return the thread count the runner asked for through ``REPROBOOK_THREADS``, or ``default``."""
    raw = os.environ.get(THREADS_ENV)
    if raw is None or raw == "":
        return default
    try:
        count = int(raw)
    except ValueError as exc:
        raise ValueError(f"{THREADS_ENV}={raw!r} is not an integer; set it to a thread count such as 1") from exc
    if count < 1:
        raise ValueError(f"{THREADS_ENV}={count} must be at least 1")
    return count


def seed_everything(seed: int, threads: int | None = None, deterministic: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and torch, and return a NumPy generator for the seed.

    Parameters
    ----------
    seed : int
        Base seed; replicate ``r`` of an experiment conventionally uses ``seed + r``.
    threads : int, optional
        Intra-op thread count for torch. Defaults to ``REPROBOOK_THREADS`` when the runner set it,
        else leaves torch's own default.
    deterministic : bool
        Ask torch for deterministic algorithms (``torch.use_deterministic_algorithms``).

    Returns
    -------
    numpy.random.Generator
        ``numpy.random.default_rng(seed)``.
    """
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    threads = threads if threads is not None else thread_count()
    try:
        import torch
    except ImportError:
        logger.debug("torch is not installed; seeding Python and NumPy only")
    else:
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True)
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return np.random.default_rng(seed)
