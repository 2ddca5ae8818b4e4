"""The three one-dimensional nonconvex test functions of the diffGrad paper."""

from __future__ import annotations

import numpy as np


def gradient(function_id: int, x: np.ndarray) -> np.ndarray:
    """Return the piecewise derivative of test function ``function_id`` (1, 2 or 3) at ``x``.

    Parameters
    ----------
    function_id : int
        1, 2 or 3.
    x : ndarray
        Points.

    Returns
    -------
    ndarray
        :math:`F'(x)`, as given in the authors' notebook.
    """
    x = np.asarray(x, dtype=float)
    if function_id == 1:
        return np.where(x <= 0, 2 * x + 0.6, 2 * x - 0.4)
    if function_id == 2:
        return np.where(x <= -0.9, -40.0, x * np.cos(8 * x) + np.sin(8 * x) + 3 * x**2)
    if function_id == 3:
        conditions = [x <= -0.5, x <= -0.4, x <= 0, x <= 0.4, x <= 0.5]
        choices = [2 * x, np.ones_like(x), np.full_like(x, -7 / 8), np.full_like(x, 7 / 8), -np.ones_like(x)]
        return np.select(conditions, choices, default=2 * x)
    raise ValueError(f"function_id must be 1, 2 or 3, got {function_id}")


def value(function_id: int, x: np.ndarray) -> np.ndarray:
    """Return test function ``function_id`` at ``x``: the continuous antiderivative of :func:`gradient`.

    Parameters
    ----------
    function_id : int
        1, 2 or 3.
    x : ndarray
        Points.

    Returns
    -------
    ndarray
        :math:`F(x)`, fixed by continuity and :math:`F(0) = 0` (functions 1 and 3).
    """
    x = np.asarray(x, dtype=float)
    if function_id == 1:
        return np.where(x <= 0, x**2 + 0.6 * x, x**2 - 0.4 * x)
    if function_id == 2:

        def smooth(z: np.ndarray) -> np.ndarray:
            return z**3 + z * np.sin(8 * z) / 8 - 7 * np.cos(8 * z) / 64

        return np.where(x <= -0.9, smooth(np.float64(-0.9)) - 40 * (x + 0.9), smooth(x))
    if function_id == 3:
        r = np.abs(x)
        return np.where(r <= 0.4, 7 * r / 8, np.where(r <= 0.5, 0.75 - r, r**2))
    raise ValueError(f"function_id must be 1, 2 or 3, got {function_id}")
