"""Stochastic subgradient runs on robust regression with an exact optimality gap.

The objective is the population absolute loss F(x) = E|<a, x> - b| with a ~ N(0, I_d) and
b = <a, x_star> + eps, eps ~ Laplace(0, beta). For s = ||x - x_star||, <a, x - x_star> - eps is
the sum of N(0, s^2) and a Laplace variable, so F depends on x only through s and
F(x) - F(x_star) = (2 s^2 / beta) I(s / beta) with I(k) = int_0^inf exp(-k z) psi(z) dz and
psi(z) = phi(z) - z Phi(-z), phi and Phi the standard normal density and distribution function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize, special, stats


def _half_normal_moment(n: int) -> float:
    """Return int_0^inf z^n phi(z) dz."""
    return 2.0 ** (n / 2) * special.gamma((n + 1) / 2) / (2.0 * np.sqrt(np.pi))


# Taylor coefficients M_n / n! of I(k) = sum_n (-k)^n M_n / n!, with M_n = int_0^inf z^n psi(z) dz
# = m_n - m_{n+2} / (n + 2) by parts (m_n the half-normal moments); used for small k, where the
# closed form cancels.
_SERIES = np.array(
    [(-1) ** n * (_half_normal_moment(n) - _half_normal_moment(n + 2) / (n + 2)) / special.factorial(n) for n in range(12)]
)


def laplace_transform_psi(k: np.ndarray) -> np.ndarray:
    """Return I(k) = int_0^inf exp(-k z) psi(z) dz for k >= 0.

    Integrating by parts twice gives I(k) = phi(0)/k - 1/(2 k^2) + erfcx(k / sqrt 2) / (2 k^2),
    evaluated for k >= 0.05; below, the terms cancel and the Taylor series is used instead.
    """
    k = np.asarray(k, dtype=float)
    safe = np.maximum(k, 0.05)
    closed = stats.norm.pdf(0.0) / safe - 0.5 / safe**2 + special.erfcx(safe / np.sqrt(2.0)) / (2.0 * safe**2)
    series = np.polynomial.polynomial.polyval(k, _SERIES)
    return np.where(k >= 0.05, closed, series)


def absolute_loss_gap(s: np.ndarray, beta: float) -> np.ndarray:
    """Return F(x) - F(x_star) for points at distance ``s`` from ``x_star``.

    Parameters
    ----------
    s : numpy.ndarray
        Distances ||x - x_star||, any shape.
    beta : float
        Scale of the Laplace noise.
    """
    s = np.asarray(s, dtype=float)
    return 2.0 * s**2 / beta * laplace_transform_psi(s / beta)


def regularized_optimum(distance: float, beta: float, mu: float) -> tuple[float, float]:
    """Minimise F(x) + mu ||x||^2 / 2 when ||x_star|| = ``distance``.

    The minimiser lies on the segment from 0 to x_star, at x = lam * x_star, so the problem
    is one-dimensional in lam.

    Returns
    -------
    (float, float)
        The optimal ``lam`` and the optimal value minus F(x_star).
    """

    def excess(lam: float) -> float:
        return float(absolute_loss_gap((1 - lam) * distance, beta)) + 0.5 * mu * (lam * distance) ** 2

    result = optimize.minimize_scalar(excess, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-12})
    return float(result.x), float(result.fun)


def sgd(
    rngs: Sequence[np.random.Generator],
    x_star: np.ndarray,
    beta: float,
    horizon: int,
    n_runs: int,
    step: Callable[[np.ndarray], np.ndarray],
    mu: float = 0.0,
    tail_index: float | None = None,
    noise_scale: float = 1.0,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Run independent stochastic subgradient methods from x_0 = 0 for ``horizon`` steps.

    Each generator in ``rngs`` drives ``n_runs`` runs (one replicate), and all runs are
    vectorised together. Each step draws one sample (a, b) per run and moves along
    g_t = sign(<a, x_t> - b) a + mu x_t (+ xi_t), where xi_t has i.i.d. Student-t coordinates
    with ``tail_index`` degrees of freedom times ``noise_scale`` when ``tail_index`` is given.

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator
        One source of samples per replicate.
    x_star : numpy.ndarray
        Planted coefficients, shape ``(d,)``.
    beta : float
        Laplace noise scale of the labels.
    horizon : int
        Number of steps T.
    n_runs : int
        Runs per replicate.
    step : callable
        Maps the step indices t = 1..T to the step sizes eta_t.
    mu : float
        Strength of the l2 term mu ||x||^2 / 2.
    tail_index : float, optional
        Degrees of freedom of the added Student-t gradient noise.
    noise_scale : float
        Scale of that noise.
    chunk : int
        Steps whose samples are drawn in one call per generator.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Last iterates x_T and averages (x_1 + ... + x_T) / T, each of shape
        ``(len(rngs), n_runs, d)``.
    """
    d = len(x_star)
    eta = step(np.arange(1, horizon + 1, dtype=float))
    x = np.zeros((len(rngs) * n_runs, d))
    average = np.zeros_like(x)
    for start in range(0, horizon, chunk):
        size = min(chunk, horizon - start)
        a = np.concatenate([rng.standard_normal((size, n_runs, d)) for rng in rngs], axis=1)
        # The labels enter only through <a, x_star> + eps, so the residual is <a, x> - label.
        label = a @ x_star + np.concatenate([rng.laplace(0.0, beta, (size, n_runs)) for rng in rngs], axis=1)
        if tail_index is not None:
            noise_blocks = [noise_scale * rng.standard_t(tail_index, (size, n_runs, d)) for rng in rngs]
            xi = np.concatenate(noise_blocks, axis=1)
        for i in range(size):
            g = np.sign(np.einsum("rd,rd->r", a[i], x) - label[i])[:, None] * a[i]
            if mu:
                g += mu * x
            if tail_index is not None:
                g += xi[i]
            x -= eta[start + i] * g
            average += (x - average) / (start + i + 1)
    shape = (len(rngs), n_runs, d)
    return x.reshape(shape), average.reshape(shape)
