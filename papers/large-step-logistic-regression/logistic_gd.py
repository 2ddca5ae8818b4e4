"""Gradient descent on the logistic loss and the batch perceptron, run on many problems at once.

The methods are those of Tyurin (2024), "From Logistic Regression to the Perceptron Algorithm:
Exploring Gradient Descent with Large Step Sizes", arXiv:2412.08424. Every method acts on the
signed samples ``z_i = y_i a_i`` of a binary dataset and starts at ``theta_0 = 0``. A batch of runs
is one array ``Z`` of shape ``(B, n, d)`` (one dataset per run, repeated when several step sizes
share a dataset) and one step size per run. The model is linear without intercept, so datasets
carry a constant feature where an intercept is wanted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_softmax

Step = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def logistic_loss(margins: np.ndarray) -> np.ndarray:
    """Compute the mean logistic loss ``(1/n) sum_i log(1 + exp(-m_i))`` over the last axis.

    ``np.logaddexp`` keeps the value finite for margins of any size, including the very large
    margins that large step sizes produce.
    """
    return np.logaddexp(0.0, -margins).mean(axis=-1)


def weighted_sum(weights: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Return ``sum_i w_i z_i`` for every run: ``(B, n)`` weights and ``(B, n, d)`` samples."""
    return (weights[:, None, :] @ Z)[:, 0]


def lr_gd_step(margins: np.ndarray, Z: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Return the LR+GD update ``-gamma * grad f = gamma/n * sum_i sigma(-m_i) z_i``."""
    n = Z.shape[1]
    return gamma[:, None] / n * weighted_sum(expit(-margins), Z)


def normalized_lr_gd_step(margins: np.ndarray, Z: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Return the Normalized LR+GD update ``-gamma * beta_t * grad f``.

    ``beta_t = (mean_i sigma(-m_i))^{-1}``, so the update is ``gamma`` times the average of the
    ``z_i`` weighted by ``sigma(-m_i)``. The weights are formed as a softmax of
    ``log sigma(-m_i) = -log(1 + exp(m_i))``, which stays finite and accurate when every
    ``sigma(-m_i)`` underflows to zero on a separated dataset.
    """
    weights = np.exp(log_softmax(-np.logaddexp(0.0, margins), axis=-1))
    return gamma[:, None] * weighted_sum(weights, Z)


def perceptron_weights(margins: np.ndarray) -> np.ndarray:
    """Return 1 for misclassified samples, 1/2 for samples on the hyperplane and 0 otherwise.

    The half weight is ``sigma(0)``, the limit of LR+GD's weight ``sigma(-gamma m)`` at
    ``m = 0``. It makes the first step from ``theta_0 = 0`` equal to
    ``(1/(2n)) sum_i z_i``, the first step of Batch Perceptron in Tyurin (2024).
    """
    return (margins < 0) + 0.5 * (margins == 0)


def batch_perceptron_step(margins: np.ndarray, Z: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Return the Batch Perceptron update ``(1/n) sum_i w_i z_i``, which does not use ``gamma``."""
    n = Z.shape[1]
    return weighted_sum(perceptron_weights(margins), Z) / n


def normalized_batch_perceptron_step(margins: np.ndarray, Z: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Return the Normalized Batch Perceptron update ``sum_i w_i z_i / sum_i w_i``.

    The update does not use ``gamma``. It is zero once no sample is misclassified or on the
    hyperplane.
    """
    weights = perceptron_weights(margins)
    total = weights.sum(axis=-1, keepdims=True)
    return weighted_sum(weights / np.where(total > 0, total, 1.0), Z)


@dataclass(frozen=True)
class Trajectory:
    """Histories of a batch of runs, indexed by iteration ``t = 0, ..., T``.

    Attributes
    ----------
    loss
        Logistic loss ``f(theta_t)``, shape ``(T + 1, B)``.
    errors
        Number of samples with ``y_i a_i^T theta_t <= 0``, shape ``(T + 1, B)``.
    iterates
        ``theta_t``, shape ``(T + 1, B, d)``, or ``None`` when not stored.

    A run stopped at separation has ``nan`` loss, error count -1 and ``nan`` iterates after
    its separation iteration.
    """

    loss: np.ndarray
    errors: np.ndarray
    iterates: np.ndarray | None

    def separation_iteration(self) -> np.ndarray:
        """Return the first ``t`` with zero errors per run, ``nan`` for runs that never separate."""
        separated = self.errors == 0
        first = np.argmax(separated, axis=0).astype(float)
        first[~separated.any(axis=0)] = np.nan
        return first


def run(
    step: Step,
    Z: np.ndarray,
    gamma: np.ndarray | float,
    max_iters: int,
    store_iterates: bool = False,
    stop: str = "all",
) -> Trajectory:
    """Run ``theta_{t+1} = theta_t + step(margins_t, Z, gamma)`` from ``theta_0 = 0``.

    Parameters
    ----------
    step
        One of the ``*_step`` functions of this module.
    Z
        Signed samples ``y_i a_i``, shape ``(B, n, d)``.
    gamma
        Step size per run, shape ``(B,)``, or one value for all runs.
    max_iters
        Number of updates ``T``.
    store_iterates
        Keep every ``theta_t`` (memory ``(T + 1) * B * d`` floats).
    stop
        ``"all"``: each run stops at its separation iteration and the loop ends when every run
        has stopped. ``"any"``: the loop ends at the first iteration where some run separates,
        which is enough to find the fastest run of a batch. ``"never"``: every run makes all
        ``max_iters`` updates.

    Returns
    -------
    Trajectory
        Loss, error counts and optionally the iterates at ``t = 0, ..., T``.
    """
    if stop not in ("all", "any", "never"):
        raise ValueError(f"invalid stop {stop!r}: use 'all', 'any' or 'never'")
    n_runs, _, dim = Z.shape
    gamma = np.broadcast_to(np.asarray(gamma, dtype=float), (n_runs,))
    theta = np.zeros((n_runs, dim))
    loss = np.full((max_iters + 1, n_runs), np.nan)
    errors = np.full((max_iters + 1, n_runs), -1)
    iterates = np.full((max_iters + 1, n_runs, dim), np.nan) if store_iterates else None

    # With stop="all", separated runs leave the batch, so slow runs do not pay for finished ones.
    active = np.arange(n_runs)
    Z_active, gamma_active = Z, gamma
    last = max_iters
    for t in range(max_iters + 1):
        margins = (Z_active @ theta[active][:, :, None])[:, :, 0]
        loss[t, active] = logistic_loss(margins)
        errors[t, active] = (margins <= 0).sum(axis=-1)
        if store_iterates:
            iterates[t, active] = theta[active]
        if t == max_iters:
            break
        running = errors[t, active] > 0
        if stop != "never" and (not running.any() or (stop == "any" and not running.all())):
            last = t
            break
        if stop == "all" and not running.all():
            active, margins = active[running], margins[running]
            Z_active, gamma_active = Z[active], gamma[active]
        theta[active] += step(margins, Z_active, gamma_active)
    return Trajectory(
        loss=loss[: last + 1],
        errors=errors[: last + 1],
        iterates=None if iterates is None else iterates[: last + 1],
    )
