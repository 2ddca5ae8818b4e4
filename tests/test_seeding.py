"""Seeding: the same seed gives the same draws in Python, NumPy and torch."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from reprobook import seed_everything


def draws(seed) -> tuple:
    rng = seed_everything(seed)
    return random.random(), np.random.rand(), rng.random(), float(torch.rand(1))


def test_same_seed_same_draws():
    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_numpy_integer_seed_accepted():
    assert draws(np.int64(3)) == draws(3)


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_invalid_seed_rejected(seed, error):
    with pytest.raises(error):
        seed_everything(seed)


def test_threads_from_environment(monkeypatch):
    monkeypatch.setenv("REPROBOOK_THREADS", "1")
    seed_everything(0)
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("REPROBOOK_THREADS", "many")
    with pytest.raises(ValueError, match="REPROBOOK_THREADS='many' is not an integer"):
        seed_everything(0)
