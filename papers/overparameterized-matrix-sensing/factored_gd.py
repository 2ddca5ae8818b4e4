"""Gradient descent on factored matrix sensing, batched over runs that share one problem.

Every run of a batch uses the same measurement operator, so the normal operator
``H = (1/m) A^T A`` (an ``n^2 x n^2`` matrix) is formed once and each step costs one
``(runs, n^2) @ (n^2, n^2)`` product, whatever the number of measurements ``m``.

Losses (``r_i = <A_i, Z> - y_i`` with ``Z = X X^T`` or ``Z = F G^T``):

* symmetric: ``f(X) = (1/(4m)) sum_i r_i^2``, gradient ``sym(E) X`` with ``E = (1/m) sum_i r_i A_i``
  and ``sym(E) = (E + E^T) / 2``;
* asymmetric: ``f(F, G) = (1/(2m)) sum_i r_i^2``, gradients ``E G`` and ``E^T F``.

With the Gaussian ensembles of :func:`reprobook.optim.matrix_sensing`, ``E`` concentrates at
``Z - M*``, so both updates are the population updates ``X <- X - eta (X X^T - M*) X`` and
``(F, G) <- (F - eta (F G^T - M*) G, G - eta (F G^T - M*)^T F)`` up to the restricted-isometry error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reprobook.optim import MatrixSensing, matrix_sensing


@dataclass(frozen=True)
class NormalOperator:
    """The map ``Z -> (1/m) sum_i <A_i, Z> A_i`` of one problem, with its right-hand side.

    Attributes
    ----------
    H : numpy.ndarray
        ``(1/m) A^T A`` on ``Z.ravel()``, shape ``(n^2, n^2)``.
    b : numpy.ndarray
        ``(1/m) A^T y`` as an ``n x n`` matrix, so that ``E = H Z - b``.
    M_star : numpy.ndarray
        Ground truth, used only to measure the error.
    """

    H: np.ndarray
    b: np.ndarray
    M_star: np.ndarray

    @classmethod
    def from_problem(cls, problem: MatrixSensing) -> NormalOperator:
        """Form ``H`` and ``b`` from the measurements of ``problem``."""
        A = problem.operator
        m, n = len(problem.y), problem.X_star.shape[0]
        return cls(A.T @ A / m, (problem.y @ A / m).reshape(n, n), problem.X_star)

    def residual(self, Z: np.ndarray) -> np.ndarray:
        """Return ``E = (1/m) sum_i (<A_i, Z> - y_i) A_i`` for a batch ``Z`` of shape ``(runs, n, n)``."""
        runs, n, _ = Z.shape
        return (Z.reshape(runs, n * n) @ self.H).reshape(runs, n, n) - self.b

    def relative_error(self, Z: np.ndarray) -> np.ndarray:
        """Return ``||Z - M*||_F / ||M*||_F`` per run."""
        return np.linalg.norm(Z - self.M_star, axis=(1, 2)) / np.linalg.norm(self.M_star)


def psd_problem(rng: np.random.Generator, n: int, rank: int, m: int) -> MatrixSensing:
    """Draw a positive semi-definite rank-``rank`` target measured by general Gaussian ``A_i``.

    The measurement matrices are those of :func:`reprobook.optim.matrix_sensing` with
    ``symmetric=False``, and the target is ``U U^T`` for its left factor ``U``, so it has the same
    singular values. A symmetric factorisation depends on the ``A_i`` only through ``sym(A_i)``,
    which is the symmetric ensemble of that function. General ``A_i`` also make ``F G^T``
    identifiable, so both factorisations can be fitted to the same measurements.
    """
    general = matrix_sensing(rng, n, rank, m, symmetric=False)
    left = general.factors[0]
    M_star = left @ left.T
    y = general.operator @ M_star.ravel()
    return MatrixSensing(general.A, y, M_star, (left,), np.zeros(m, dtype=bool))


def record_grid(iterations: int, points: int = 150) -> np.ndarray:
    """Return iteration indices in ``[1, iterations]``: ``points`` spaced evenly in ``log t`` and ``2 * points`` in ``t``.

    The log-spaced part serves log-log (sublinear) fits and the linear part semi-log (linear) fits.
    """
    log_part = np.geomspace(1, iterations, points)
    linear_part = np.linspace(iterations / (2 * points), iterations, 2 * points)
    return np.unique(np.concatenate([log_part, linear_part]).astype(int))


def symmetric_gd(
    operator: NormalOperator,
    X0: np.ndarray,
    eta: float,
    iterations: int,
    grid: np.ndarray,
) -> np.ndarray:
    """Run ``X <- X - eta sym(E) X`` on a batch of factors and record the relative error.

    Parameters
    ----------
    operator : NormalOperator
        The problem, with a positive semi-definite ground truth.
    X0 : numpy.ndarray
        Initial factors, shape ``(runs, n, k)``.
    eta : float
        Step size.
    iterations : int
        Number of steps ``T``.
    grid : numpy.ndarray
        Increasing iteration indices in ``[1, T]`` at which the error is stored.

    Returns
    -------
    numpy.ndarray
        ``||X_t X_t^T - M*||_F / ||M*||_F`` at ``t`` in ``grid``, shape ``(len(grid), runs)``.
    """
    X = X0.copy()
    errors = np.empty((len(grid), len(X)))
    slot = 0
    for t in range(1, iterations + 1):
        E = operator.residual(X @ X.transpose(0, 2, 1))
        X = X - 0.5 * eta * (E + E.transpose(0, 2, 1)) @ X
        if slot < len(grid) and t == grid[slot]:
            errors[slot] = operator.relative_error(X @ X.transpose(0, 2, 1))
            slot += 1
    return errors


def rebalance(F: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace ``(F, G)`` by ``(F R, G R^{-T})`` so that every singular value of ``F`` is ``||F G^T||_2^{1/2}``.

    With the thin SVD ``F = U S V^T``, ``R = c V S^{-1} V^T`` gives ``F R = c U V^T`` and
    ``G R^{-T} = G V S V^T / c``. The product ``F G^T`` is unchanged, while the imbalance
    ``F^T F - G^T G`` becomes of order ``c^2`` in every direction instead of order ``alpha^2``
    in the directions that small initialisation left small.

    Parameters
    ----------
    F, G : numpy.ndarray
        Batches of factors, shapes ``(runs, n, k)``; ``F`` must have full column rank.

    Returns
    -------
    tuple of numpy.ndarray
        The new ``F`` and ``G``.
    """
    U, S, Vt = np.linalg.svd(F, full_matrices=False)
    c = np.sqrt(np.linalg.norm(F @ G.transpose(0, 2, 1), ord=2, axis=(1, 2)))[:, None, None]
    V = Vt.transpose(0, 2, 1)
    return c * U @ Vt, (G @ V) * S[:, None, :] @ Vt / c


def asymmetric_gd(
    operator: NormalOperator,
    F0: np.ndarray,
    G0: np.ndarray,
    eta: float,
    iterations: int,
    grid: np.ndarray,
    rebalance_below: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run simultaneous gradient descent on ``(F, G)`` and record the relative error.

    Parameters
    ----------
    operator : NormalOperator
        The problem.
    F0, G0 : numpy.ndarray
        Initial factors, shapes ``(runs, n, k)``.
    eta : float
        Step size.
    iterations : int
        Number of steps ``T``.
    grid : numpy.ndarray
        Increasing iteration indices in ``[1, T]`` at which the error is stored.
    rebalance_below : float, optional
        If given, each run replaces one step by :func:`rebalance` the first time its relative
        error falls below this value.

    Returns
    -------
    errors : numpy.ndarray
        ``||F_t G_t^T - M*||_F / ||M*||_F`` at ``t`` in ``grid``, shape ``(len(grid), runs)``.
    switch : numpy.ndarray
        Iteration of the rebalancing step per run, ``-1`` where it did not happen.
    """
    F, G = F0.copy(), G0.copy()
    errors = np.empty((len(grid), len(F)))
    switch = np.full(len(F), -1)
    slot = 0
    for t in range(1, iterations + 1):
        Z = F @ G.transpose(0, 2, 1)
        E = operator.residual(Z)
        F, G = F - eta * E @ G, G - eta * E.transpose(0, 2, 1) @ F
        if rebalance_below is not None:
            due = (switch < 0) & (operator.relative_error(F @ G.transpose(0, 2, 1)) < rebalance_below)
            if due.any():
                F[due], G[due] = rebalance(F[due], G[due])
                switch[due] = t
        if slot < len(grid) and t == grid[slot]:
            errors[slot] = operator.relative_error(F @ G.transpose(0, 2, 1))
            slot += 1
    return errors, switch
