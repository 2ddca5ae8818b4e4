"""Maximum-likelihood learning of (a, sigma_u) by score ascent with particle smoothers.

The parameter is theta = (a, log sigma_u), and sigma_v and sigma_0 are known. By Fisher's
identity the score of log p_theta(y_{0:T}) is the smoothed expectation of an additive
functional, which `smoothing.paris_sweep` estimates through the statistics
S = sum_t (x_{t-1}^2, x_{t-1} x_t, x_t^2).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from smoothing import Model, RandomStreams, kalman_smoother, paris_sweep


def score_from_statistics(statistics: np.ndarray, a: np.ndarray, log_sigma_u: np.ndarray, horizon: int) -> np.ndarray:
    """Convert smoothed sufficient statistics into the score of (a, log sigma_u).

    With S = (S_00, S_01, S_11), the transition log-density gives
    d/da = (S_01 - a S_00) / sigma_u^2 and
    d/dlog sigma_u = -T + (S_11 - 2 a S_01 + a^2 S_00) / sigma_u^2.

    Returns
    -------
    np.ndarray
        Score of shape (B, 2).
    """
    s00, s01, s11 = statistics[:, 0], statistics[:, 1], statistics[:, 2]
    variance = np.exp(2 * log_sigma_u)
    d_a = (s01 - a * s00) / variance
    d_log_sigma = -horizon + (s11 - 2 * a * s01 + a**2 * s00) / variance
    return np.stack([d_a, d_log_sigma], axis=1)


def complete_data_information(statistics: np.ndarray, log_sigma_u: np.ndarray, horizon: int) -> np.ndarray:
    """Return the diagonal complete-data Fisher information of (a, log sigma_u), shape (B, 2).

    It is S_00 / sigma_u^2 for a and 2 T for log sigma_u. Dividing the score by it turns
    score ascent into a scaled, EM-like step that needs no per-coordinate tuning.
    """
    information_a = statistics[:, 0] / np.exp(2 * log_sigma_u)
    return np.stack([information_a, np.full_like(information_a, 2.0 * horizon)], axis=1)


def fit_mle(y: np.ndarray, sigma_v: float, sigma_0: float, start: tuple[float, float] = (0.5, 0.0)) -> np.ndarray:
    """Maximise the Kalman log-likelihood over (a, log sigma_u), one data set per row of `y`.

    The gradient is exact: Fisher's identity with the Kalman-smoothed statistics.

    Returns
    -------
    np.ndarray
        The maximiser (a, log sigma_u) of each data set, shape (B, 2).
    """
    horizon = y.shape[1] - 1
    estimates = []
    for row in y:

        def objective(theta: np.ndarray, row: np.ndarray = row) -> tuple[float, np.ndarray]:
            model = Model(np.array([theta[0]]), np.exp([theta[1]]), np.array([sigma_v]), sigma_0)
            loglik, statistics = kalman_smoother(model, row[None])
            score = score_from_statistics(statistics, theta[:1], theta[1:], horizon)[0]
            return -loglik[0], -score

        result = minimize(
            objective,
            np.array(start),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-0.999, 0.999), (-5.0, 3.0)],
            options={"gtol": 1e-9, "ftol": 1e-14},
        )
        estimates.append(result.x)
    return np.array(estimates)


def score_ascent(
    y: np.ndarray,
    sigma_v: float,
    sigma_0: float,
    theta_start: tuple[float, float],
    conditional: np.ndarray,
    n_particles: int,
    n_backward: int,
    n_steps: int,
    step_size: float,
    streams: RandomStreams,
) -> np.ndarray:
    """Run stochastic-approximation score ascent with one PaRIS sweep per step.

    Each step estimates the score at the current parameter and moves
    theta <- theta + gamma * score / I with a constant gain gamma = `step_size`, where I is
    the diagonal complete-data information estimated from the same sweep. With a constant
    gain the iterates settle into a stationary cloud around the root of the mean score
    field. That root is the MLE only when the score estimate is unbiased, and the mean of
    the second-half iterates locates it. Rows flagged in `conditional` use PPG. From the
    second step on, their sweep is conditional on the trajectory drawn at the previous
    step, carried over across parameter updates as in Markov score climbing. The other
    rows run plain PaRIS, so both arms cost one sweep of N particles per step.

    Parameters
    ----------
    y : np.ndarray
        Observations, shape (B, T + 1); rows may repeat a data set.
    conditional : np.ndarray
        Boolean mask of the rows that use PPG.

    Returns
    -------
    np.ndarray
        Parameter iterates (a, log sigma_u) after each step, shape (n_steps, B, 2).
    """
    batch, length = y.shape
    horizon = length - 1
    theta = np.tile(np.asarray(theta_start, dtype=float), (batch, 1))
    sigma_v_rows = np.full(batch, sigma_v)
    iterates = np.empty((n_steps, batch, 2))
    reference = None
    for step in range(n_steps):
        model = Model(theta[:, 0].copy(), np.exp(theta[:, 1]), sigma_v_rows, sigma_0)
        sweep = paris_sweep(model, y, n_particles, n_backward, streams, reference=reference, conditioned=conditional)
        score = score_from_statistics(sweep.estimate, theta[:, 0], theta[:, 1], horizon)
        information = complete_data_information(sweep.estimate, theta[:, 1], horizon)
        theta = theta + step_size * score / information
        # Keep the autoregression stable so the particle filter stays well defined.
        theta[:, 0] = np.clip(theta[:, 0], -0.999, 0.999)
        reference = sweep.path
        iterates[step] = theta
    return iterates
