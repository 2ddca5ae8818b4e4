"""MECO and noise-contrastive estimation for the mean of a unit-variance Gaussian.

Both solvers are vectorised over a leading batch of independent runs (seeds, step sizes or noise
settings), so one call runs every replicate of an experiment in lock step. The unnormalised model
is ``log p~(x; mu) = -(x - mu)^2 / 2``, whose partition function ``sqrt(2 pi)`` does not depend on
``mu``; the solvers never use that fact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True)
class GaussianNoise:
    """Noise distribution ``q = N(mean, std^2)``, broadcast over runs.

    Attributes
    ----------
    mean, std : numpy.ndarray
        Mean and standard deviation of ``q`` per run, each of shape ``(runs,)``.
    """

    mean: np.ndarray
    std: np.ndarray

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` noise points per run, shape ``(runs, size)``."""
        return self.mean[:, None] + self.std[:, None] * rng.standard_normal((len(self.mean), size))

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """Evaluate ``log q(z)`` for ``z`` of shape ``(runs, size)``."""
        standardised = (z - self.mean[:, None]) / self.std[:, None]
        return -0.5 * standardised**2 - np.log(self.std[:, None]) - LOG_SQRT_2PI


def weight_second_moment(mu: float | np.ndarray, noise_mean: np.ndarray, noise_std: np.ndarray) -> np.ndarray:
    """Compute ``E_q[(p(z)/q(z))^2]`` for ``p = N(mu, 1)`` and ``q = N(m, s^2)`` in closed form.

    The value is ``s^2 / sqrt(2 s^2 - 1) * exp((mu - m)^2 / (2 s^2 - 1))``; it is infinite when
    ``s^2 <= 1/2``. Minus one, it is the relative variance of the importance weight ``p~/q`` whose
    batch means MECO averages. Jiang et al. (ICML 2023) state MECO's rate through this variance.
    """
    denominator = 2.0 * np.asarray(noise_std) ** 2 - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        moment = noise_std**2 / np.sqrt(denominator) * np.exp((mu - noise_mean) ** 2 / denominator)
    return np.where(denominator > 0, moment, np.inf)


def meco(
    rng: np.random.Generator,
    data: np.ndarray,
    noise: GaussianNoise,
    lr: np.ndarray,
    beta: float,
    iterations: int,
    batch_data: int,
    batch_noise: int,
    mu0: float = 0.0,
) -> np.ndarray:
    """Run MECO, SGD on the negative log-likelihood with a moving-average estimate of ``Z``.

    Each step draws a data mini-batch ``x`` and a fresh noise batch ``z ~ q``, updates
    ``u <- (1 - beta) u + beta mean_j w_j`` with ``w_j = p~(z_j) / q(z_j)`` and steps along
    ``G = -mean_i (x_i - mu) + mean_j w_j (z_j - mu) / u``, the chain rule through ``log u``.
    ``u`` starts at the first batch mean of ``w``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the mini-batch indices and the noise.
    data : numpy.ndarray
        Observations per run, shape ``(runs, n)``.
    noise : GaussianNoise
        Noise distribution per run.
    lr : numpy.ndarray
        Step size per run, shape ``(runs,)``.
    beta : float
        Moving-average weight in ``(0, 1]``; ``beta = 1`` uses the current batch alone.
    iterations : int
        Number of steps.
    batch_data, batch_noise : int
        Mini-batch sizes.
    mu0 : float
        Initial mean.

    Returns
    -------
    numpy.ndarray
        Iterates ``mu_0, ..., mu_T``, shape ``(iterations + 1, runs)``.
    """
    runs, n = data.shape
    mu = np.full(runs, mu0, dtype=float)
    u = None
    path = np.empty((iterations + 1, runs))
    path[0] = mu
    rows = np.arange(runs)[:, None]
    for t in range(iterations):
        x = data[rows, rng.integers(0, n, (runs, batch_data))]
        z = noise.sample(rng, batch_noise)
        w = np.exp(-0.5 * (z - mu[:, None]) ** 2 - noise.log_density(z))
        u = w.mean(axis=1) if u is None else (1.0 - beta) * u + beta * w.mean(axis=1)
        gradient = -(x - mu[:, None]).mean(axis=1) + (w * (z - mu[:, None])).mean(axis=1) / u
        mu = mu - lr * gradient
        path[t + 1] = mu
    return path


def _log_sigmoid(s: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -s)


def nce(
    rng: np.random.Generator,
    data: np.ndarray,
    noise: GaussianNoise,
    lr: np.ndarray,
    iterations: int,
    batch_data: int,
    batch_noise: int,
    mu0: float = 0.0,
    c0: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Run noise-contrastive estimation with SGD on ``(mu, c)``.

    The classifier logit is ``s(x) = log p~(x; mu) + c - log q(x) - log nu`` with
    ``nu = batch_noise / batch_data``, and the loss is
    ``-mean_x log sigmoid(s(x)) - nu mean_z log(1 - sigmoid(s(z)))``.

    Parameters are those of :func:`meco` plus ``c0``, the initial log-normaliser.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Iterates of ``mu`` and of ``c``, each of shape ``(iterations + 1, runs)``.
    """
    runs, n = data.shape
    nu = batch_noise / batch_data
    mu = np.full(runs, mu0, dtype=float)
    c = np.full(runs, c0, dtype=float)
    path_mu, path_c = np.empty((iterations + 1, runs)), np.empty((iterations + 1, runs))
    path_mu[0], path_c[0] = mu, c
    rows = np.arange(runs)[:, None]
    for t in range(iterations):
        x = data[rows, rng.integers(0, n, (runs, batch_data))]
        z = noise.sample(rng, batch_noise)
        s_x = -0.5 * (x - mu[:, None]) ** 2 + c[:, None] - noise.log_density(x) - np.log(nu)
        s_z = -0.5 * (z - mu[:, None]) ** 2 + c[:, None] - noise.log_density(z) - np.log(nu)
        miss_x = -np.expm1(_log_sigmoid(s_x))  # 1 - sigmoid(s), accurate when s is large
        hit_z = np.exp(_log_sigmoid(s_z))
        gradient_mu = -(miss_x * (x - mu[:, None])).mean(axis=1) + nu * (hit_z * (z - mu[:, None])).mean(axis=1)
        gradient_c = -miss_x.mean(axis=1) + nu * hit_z.mean(axis=1)
        mu, c = mu - lr * gradient_mu, c - lr * gradient_c
        path_mu[t + 1], path_c[t + 1] = mu, c
    return path_mu, path_c


def nce_loss(mu: float, c: float, x: np.ndarray, z: np.ndarray, noise_mean: float, noise_std: float) -> float:
    """Evaluate the NCE loss of :func:`nce` on fixed samples, for a deterministic check of its optimum."""
    noise = GaussianNoise(np.array([noise_mean]), np.array([noise_std]))
    nu = len(z) / len(x)
    s_x = -0.5 * (x - mu) ** 2 + c - noise.log_density(x[None])[0] - np.log(nu)
    s_z = -0.5 * (z - mu) ** 2 + c - noise.log_density(z[None])[0] - np.log(nu)
    return float(-_log_sigmoid(s_x).mean() - nu * _log_sigmoid(-s_z).mean())


def settling_iteration(path: np.ndarray, target: np.ndarray, tol: float) -> np.ndarray:
    """Return the first iteration after which ``|path - target| < tol`` stays true to the end, per run.

    A run that ends outside the tolerance gets ``len(path)``, the censoring value.
    """
    outside = np.abs(path - target) >= tol
    last_outside = len(path) - 1 - outside[::-1].argmax(axis=0)
    return np.where(outside.any(axis=0), last_outside + 1, 0).astype(float)
