"""Batched first-order methods on the factored (Burer-Monteiro) matrix-sensing problem.

A batch of K runs shares one measurement operator ``M`` of shape ``(m, d*d)`` (row i is
``A_i.ravel()`` with symmetric ``A_i``) and one ground truth ``X_star``. Run k has its own
measurement vector ``y[:, k]``, its own row weights ``w[:, k]`` (``1/m_k`` on the ``m_k``
rows it uses, 0 elsewhere) and its own factor ``U_k`` of shape ``(d, r_k)``. Factors of
different widths share one array of width ``max r_k``: the padding columns start at zero and
stay zero, because every update multiplies ``U`` from the left. One iteration then costs two
matrix products with ``M`` for the whole batch instead of two per run.

For symmetric ``A_i`` and residuals ``res_i = <A_i, U U^T> - y_i``:

* the l1 loss ``f(U) = sum_i w_i |res_i|`` has the subgradient ``2 Q U`` with
  ``Q = sum_i w_i sign(res_i) A_i``;
* the l2 loss ``g(U) = (1/2) sum_i w_i res_i^2`` has the gradient ``2 R U`` with
  ``R = sum_i w_i res_i A_i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOSSES = ("l1", "l2")


@dataclass(frozen=True)
class BatchRun:
    """Result of one batched run.

    Attributes
    ----------
    U : numpy.ndarray
        Final factors, shape ``(K, d, r_max)``.
    error : numpy.ndarray
        Relative error ``||U U^T - X_star||_F / ||X_star||_F`` before each iteration and after
        the last one, shape ``(T + 1, K)``.
    """

    U: np.ndarray
    error: np.ndarray


def small_init(rng: np.random.Generator, d: int, rank: int, scale: float, width: int | None = None) -> np.ndarray:
    """Draw ``U_0 = scale * G / ||G||_F`` with Gaussian ``G`` of shape ``(d, rank)``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    d, rank : int
        Shape of the factor.
    scale : float
        Frobenius norm ``alpha`` of ``U_0``.
    width : int, optional
        Pad with zero columns up to this width, for batching with wider factors.
    """
    G = rng.standard_normal((d, rank))
    U = scale * G / np.linalg.norm(G)
    width = rank if width is None else width
    if width < rank:
        raise ValueError(f"width {width} is smaller than the rank {rank}")
    return np.pad(U, ((0, 0), (0, width - rank)))


def geometric_steps(step0: float, decay: float, n_iters: int) -> np.ndarray:
    """Return the step sizes ``eta_t = step0 * decay**t`` for ``t = 0, ..., n_iters - 1``."""
    if not 0 < decay <= 1:
        raise ValueError(f"decay must lie in (0, 1], got {decay}")
    return step0 * decay ** np.arange(n_iters)


def descent_direction(
    M: np.ndarray, y: np.ndarray, weights: np.ndarray, U: np.ndarray, loss: str
) -> np.ndarray:
    """Compute the (sub)gradient of the weighted loss at every factor of the batch.

    Parameters
    ----------
    M : numpy.ndarray
        Measurement operator, shape ``(m, d*d)``, rows of symmetric matrices.
    y : numpy.ndarray
        Measurements, shape ``(m, K)``.
    weights : numpy.ndarray
        Row weights, shape ``(m, K)``.
    U : numpy.ndarray
        Factors, shape ``(K, d, r)``.
    loss : {"l1", "l2"}
        Which loss is differentiated; ``sign(0) = 0`` is the subgradient chosen at a kink.

    Returns
    -------
    numpy.ndarray
        Shape ``(K, d, r)``.
    """
    K, d, _ = U.shape
    X = U @ U.transpose(0, 2, 1)
    residual = M @ X.reshape(K, d * d).T - y
    if loss == "l1":
        coefficient = weights * np.sign(residual)
    elif loss == "l2":
        coefficient = weights * residual
    else:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    Q = (M.T @ coefficient).T.reshape(K, d, d)
    return 2.0 * Q @ U


def run_batch(
    M: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    X_star: np.ndarray,
    U0: np.ndarray,
    steps: np.ndarray,
    loss: str = "l1",
) -> BatchRun:
    """Run ``U_{t+1} = U_t - eta_t D_t`` on a batch, with ``D_t`` from :func:`descent_direction`.

    Parameters
    ----------
    M, y, weights
        As in :func:`descent_direction`.
    X_star : numpy.ndarray
        Ground truth, shape ``(d, d)``, for the error trace.
    U0 : numpy.ndarray
        Initial factors, shape ``(K, d, r)``.
    steps : numpy.ndarray
        Step sizes ``eta_t``, shape ``(T,)`` (one schedule for the batch) or ``(T, K)``.
    loss : {"l1", "l2"}
        Sub-gradient method on the l1 loss, or gradient descent on the l2 loss.

    A run whose iterates overflow (gradient descent with too large a step) does not raise: its
    error trace becomes inf or NaN from that iteration on.
    """
    steps = np.asarray(steps, dtype=float)
    if steps.ndim == 1:
        steps = np.repeat(steps[:, None], len(U0), axis=1)
    U = np.array(U0, dtype=float)
    norm_star = np.linalg.norm(X_star)
    error = np.empty((len(steps) + 1, len(U)))
    with np.errstate(over="ignore", invalid="ignore"):
        for t, eta in enumerate(steps):
            error[t] = np.linalg.norm(U @ U.transpose(0, 2, 1) - X_star, axis=(1, 2)) / norm_star
            U = U - eta[:, None, None] * descent_direction(M, y, weights, U, loss)
        error[-1] = np.linalg.norm(U @ U.transpose(0, 2, 1) - X_star, axis=(1, 2)) / norm_star
    return BatchRun(U, error)


def iterations_to(error: np.ndarray, tolerance: float) -> np.ndarray:
    """Return, per run, the first iteration whose error is at most ``tolerance``.

    Runs that never reach it get NaN, so a rule that reads the value returns ``inconclusive``
    unless the notebook handles them.

    Parameters
    ----------
    error : numpy.ndarray
        Error traces, shape ``(T + 1, K)``.
    tolerance : float
        Error level.
    """
    reached = error <= tolerance
    first = reached.argmax(axis=0).astype(float)
    first[~reached.any(axis=0)] = np.nan
    return first
