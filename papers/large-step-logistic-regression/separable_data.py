"""Linearly separable binary datasets and their margin.

Every loader returns the signed samples ``Z`` with rows ``z_i = y_i a_i``, and each docstring gives
the radius ``R = max_i ||a_i||``. A dataset is separable by a hyperplane through the origin exactly
when some ``theta`` has ``Z theta > 0``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.optimize import nnls
from sklearn.datasets import load_digits


def margin_dataset(rng: np.random.Generator, n: int, dim: int, rho: float, condition_number: float = 1.0) -> np.ndarray:
    """Draw ``n`` signed samples that a random unit vector separates with margin at least ``rho``.

    Features are Gaussian with standard deviations falling geometrically from 1 to
    ``condition_number ** -0.5``, scaled to a root-mean-square norm of 1/2. Samples outside
    the unit ball or with ``|a_i^T w*| < rho`` are rejected, where ``w*`` is uniform on the unit
    sphere, and ``y_i = sign(a_i^T w*)``. Hence ``R <= 1`` and the max margin ``mu >= rho``.

    On isotropic data (``condition_number = 1``) the mean of the ``z_i`` points almost along
    ``w*``, so a single batch step nearly separates the data. Unequal variances, as in real
    features, tilt that mean away from ``w*`` and make separation take many steps.
    """
    if not 0 < rho < 1:
        raise ValueError(f"rho must lie in (0, 1), got {rho}")
    if condition_number < 1:
        raise ValueError(f"condition_number must be at least 1, got {condition_number}")
    scales = condition_number ** (-np.linspace(0.0, 0.5, dim))
    scales /= 2 * np.linalg.norm(scales)
    w_star = rng.standard_normal(dim)
    w_star /= np.linalg.norm(w_star)
    accepted: list[np.ndarray] = []
    n_accepted = 0
    while n_accepted < n:
        a = rng.standard_normal((2 * n, dim)) * scales
        a = a[(np.linalg.norm(a, axis=1) <= 1) & (np.abs(a @ w_star) >= rho)]
        accepted.append(a)
        n_accepted += len(a)
    a = np.concatenate(accepted)[:n]
    return np.sign(a @ w_star)[:, None] * a


def worst_case_dataset(n: int) -> np.ndarray:
    """Return the dataset on which Batch Perceptron needs ``Omega(n)`` iterations (Tyurin 2024, Thm 5.1).

    One sample ``(0.5, -1)`` of class +1 and ``n - 1`` samples ``(-0.5, -1)`` of class -1, so
    ``mu = 0.5`` and ``R = sqrt(1.25)``. The samples are returned unscaled, as Tyurin (2024) defines them.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    z_positive = np.array([[0.5, -1.0]])
    z_negative = np.tile([0.5, 1.0], (n - 1, 1))
    return np.concatenate([z_positive, z_negative])


def digits_pair(
    first: int, second: int, minority_fraction: float | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Return the sklearn digits of classes ``first`` (y = +1) and ``second`` (y = -1).

    Features are the 64 pixels divided by 16 plus a constant 1, so the hyperplane may have an
    intercept. Rows are scaled to ``R = 1``. With ``minority_fraction`` the class ``second`` is
    subsampled (without replacement, by ``rng``) to that fraction of the ``first`` class size,
    keeping at least one sample and at most all of them.
    """
    features, target = _digits_features()
    positive = features[target == first]
    negative = features[target == second]
    if minority_fraction is not None:
        if rng is None:
            raise ValueError("rng is missing: pass a numpy Generator when minority_fraction is set")
        n_minority = min(len(negative), max(1, round(minority_fraction * len(positive))))
        negative = negative[rng.choice(len(negative), n_minority, replace=False)]
    Z = np.vstack([positive, -negative])
    return Z / np.linalg.norm(Z, axis=1).max()


@cache
def _digits_features() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    features = np.hstack([digits.data / 16.0, np.ones((len(digits.data), 1))])
    return features, digits.target


def max_margin(Z: np.ndarray, penalty: float = 1e4) -> tuple[float, float]:
    """Bracket the max margin ``mu = max_{||theta|| = 1} min_i z_i^T theta``.

    ``mu`` equals the distance from the origin to the convex hull of the ``z_i`` when positive.
    The hull point closest to the origin is found by non-negative least squares, with the
    constraint ``sum_i lambda_i = 1`` enforced by a heavily weighted extra row. Its norm is an
    upper bound on ``mu``, and the margin of its direction is a lower bound.

    Returns
    -------
    tuple of float
        ``(lower, upper)``; ``lower <= 0`` means that no separation was certified.
    """
    n = len(Z)
    A = np.vstack([Z.T, penalty * np.ones((1, n))])
    b = np.concatenate([np.zeros(Z.shape[1]), [penalty]])
    weights, _ = nnls(A, b, maxiter=50 * n)
    point = Z.T @ (weights / weights.sum())
    upper = float(np.linalg.norm(point))
    if upper == 0:
        return 0.0, 0.0
    lower = float((Z @ point).min() / upper)
    return lower, upper
