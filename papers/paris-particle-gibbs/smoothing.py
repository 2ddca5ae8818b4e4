"""Particle and exact smoothers for a scalar linear-Gaussian state-space model.

The model, with one parameter set per batch row, is

    x_0 ~ N(0, sigma_0^2),  x_t = a x_{t-1} + sigma_u U_t,  y_t = x_t + sigma_v V_t,

for t = 0, ..., T with U_t, V_t independent standard normal. Every function works on a
batch of B independent problems at once (arrays shaped (B, ...)), so that replicates and
data sets are vectorised instead of looped over.

The additive functional is the vector of transition sufficient statistics

    S(x_{0:T}) = sum_{t=1}^{T} (x_{t-1}^2, x_{t-1} x_t, x_t^2),

whose smoothed expectation gives both the quantity studied for bias and the score of
(a, log sigma_u).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_STATISTICS = 3
# Up to this many particles the O(N^2) exact backward draw is cheaper than accept-reject
# in NumPy, because accept-reject costs several array passes per round.
EXACT_BACKWARD_MAX_PARTICLES = 32
# Accept-reject stops once the draws still pending would cost fewer than this many
# kernel evaluations to finish exactly, because a round has a fixed NumPy overhead.
EXACT_FALLBACK_MAX_EVALUATIONS = 4096


@dataclass(frozen=True)
class Model:
    """Parameters of the linear-Gaussian model, one entry per batch row.

    Attributes
    ----------
    a : np.ndarray
        Autoregressive coefficient, shape (B,).
    sigma_u : np.ndarray
        Standard deviation of the state noise, shape (B,).
    sigma_v : np.ndarray
        Standard deviation of the observation noise, shape (B,).
    sigma_0 : float
        Standard deviation of the initial state; it does not depend on (a, sigma_u).
    """

    a: np.ndarray
    sigma_u: np.ndarray
    sigma_v: np.ndarray
    sigma_0: float = 1.0

    @classmethod
    def constant(cls, batch: int, a: float, sigma_u: float, sigma_v: float, sigma_0: float = 1.0) -> Model:
        """Build a model whose B rows share one parameter set."""
        ones = np.ones(batch)
        return cls(a * ones, sigma_u * ones, sigma_v * ones, sigma_0)


class RandomStreams:
    """Independent random streams for consecutive blocks of batch rows.

    Block k (one replicate unit, such as one data set and all its particle runs) draws
    only from generator k, so its numbers depend on its own seed and not on the other
    blocks in the batch. Every method returns draws ordered by batch row.

    Parameters
    ----------
    generators : sequence of np.random.Generator
        One generator per block.
    rows_per_block : sequence of int
        Number of consecutive batch rows in each block.
    """

    def __init__(self, generators: Sequence[np.random.Generator], rows_per_block: Sequence[int]) -> None:
        if len(generators) != len(rows_per_block):
            raise ValueError(
                f"got {len(generators)} generators for {len(rows_per_block)} row blocks; pass one per block"
            )
        self.generators = list(generators)
        self.rows_per_block = np.asarray(rows_per_block, dtype=np.intp)
        self.block_of_row = np.repeat(np.arange(len(self.generators)), self.rows_per_block)

    @classmethod
    def single(cls, generator: np.random.Generator, batch: int) -> RandomStreams:
        """Use one generator for all `batch` rows."""
        return cls([generator], [batch])

    @property
    def batch(self) -> int:
        """Total number of batch rows."""
        return int(self.rows_per_block.sum())

    def _per_block(self, counts: np.ndarray, draw) -> np.ndarray:
        parts = [draw(gen, int(c)) for gen, c in zip(self.generators, counts, strict=True) if c]
        return np.concatenate(parts) if parts else np.empty(0)

    def uniform(self, *trailing: int) -> np.ndarray:
        """Draw U(0, 1) variates of shape (B, *trailing)."""
        return self._per_block(self.rows_per_block, lambda g, c: g.random((c, *trailing)))

    def normal(self, *trailing: int) -> np.ndarray:
        """Draw standard normal variates of shape (B, *trailing)."""
        return self._per_block(self.rows_per_block, lambda g, c: g.standard_normal((c, *trailing)))

    def integers(self, high: int, *trailing: int) -> np.ndarray:
        """Draw integers uniform on {0, ..., high - 1} of shape (B, *trailing)."""
        return self._per_block(self.rows_per_block, lambda g, c: g.integers(high, size=(c, *trailing)))

    def uniform_at(self, rows: np.ndarray) -> np.ndarray:
        """Draw one U(0, 1) variate for each entry of `rows`, which must be sorted."""
        counts = np.bincount(self.block_of_row[rows], minlength=len(self.generators))
        return self._per_block(counts, lambda g, c: g.random(c))


@dataclass(frozen=True)
class SweepResult:
    """Output of one PaRIS sweep.

    Attributes
    ----------
    estimate : np.ndarray
        Estimate of the smoothed sufficient statistics, shape (B, 3).
    path : np.ndarray
        A state trajectory drawn uniformly from the backward-index tree of the sweep,
        shape (B, T + 1). Conditional on the sweep, its expected statistics equal
        `estimate`; PPG uses it as the next reference trajectory.
    """

    estimate: np.ndarray
    path: np.ndarray


def simulate(model: Model, horizon: int, streams: RandomStreams) -> tuple[np.ndarray, np.ndarray]:
    """Draw states and observations for t = 0, ..., horizon.

    Returns
    -------
    x, y : np.ndarray
        States and observations, each of shape (B, horizon + 1).
    """
    noise = streams.normal(2, horizon + 1)
    x = np.empty((streams.batch, horizon + 1))
    x[:, 0] = model.sigma_0 * noise[:, 0, 0]
    for t in range(1, horizon + 1):
        x[:, t] = model.a * x[:, t - 1] + model.sigma_u * noise[:, 0, t]
    y = x + model.sigma_v[:, None] * noise[:, 1]
    return x, y


def _kalman_filter(model: Model, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return filtering means, variances, one-step predictive variances and log p(y)."""
    batch, length = y.shape
    a, q, r = model.a, model.sigma_u**2, model.sigma_v**2
    m_pred, p_pred = np.zeros(batch), np.full(batch, model.sigma_0**2)
    m_filt, p_filt = np.empty((batch, length)), np.empty((batch, length))
    p_preds = np.empty((batch, length))
    loglik = np.zeros(batch)
    for t in range(length):
        if t > 0:
            m_pred = a * m_filt[:, t - 1]
            p_pred = a**2 * p_filt[:, t - 1] + q
        s = p_pred + r
        innovation = y[:, t] - m_pred
        loglik -= 0.5 * (np.log(2 * np.pi * s) + innovation**2 / s)
        gain = p_pred / s
        m_filt[:, t] = m_pred + gain * innovation
        p_filt[:, t] = (1 - gain) * p_pred
        p_preds[:, t] = p_pred
    return m_filt, p_filt, p_preds, loglik


def kalman_smoother(model: Model, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute the exact log-likelihood and smoothed sufficient statistics.

    The smoother is the Rauch-Tung-Striebel recursion. The lag-one smoothed covariance is
    Cov(x_{t-1}, x_t | y) = G_{t-1} P_{t|T} with the smoother gain
    G_{t-1} = a P_{t-1|t-1} / P_{t|t-1}.

    Returns
    -------
    loglik : np.ndarray
        log p(y_{0:T}), shape (B,).
    statistics : np.ndarray
        E[S(x_{0:T}) | y_{0:T}], shape (B, 3).
    """
    m_filt, p_filt, p_preds, loglik = _kalman_filter(model, y)
    length = y.shape[1]
    m_smooth, p_smooth = m_filt.copy(), p_filt.copy()
    cross = np.empty((y.shape[0], length - 1))
    for t in range(length - 2, -1, -1):
        g = model.a * p_filt[:, t] / p_preds[:, t + 1]
        m_smooth[:, t] = m_filt[:, t] + g * (m_smooth[:, t + 1] - model.a * m_filt[:, t])
        p_smooth[:, t] = p_filt[:, t] + g**2 * (p_smooth[:, t + 1] - p_preds[:, t + 1])
        cross[:, t] = g * p_smooth[:, t + 1]

    second_moment = m_smooth**2 + p_smooth
    lag_one = m_smooth[:, :-1] * m_smooth[:, 1:] + cross
    statistics = np.stack([second_moment[:, :-1].sum(1), lag_one.sum(1), second_moment[:, 1:].sum(1)], axis=1)
    return loglik, statistics


def sample_smoothing_paths(model: Model, y: np.ndarray, streams: RandomStreams) -> np.ndarray:
    """Draw exact trajectories from p(x_{0:T} | y_{0:T}) by Kalman filtering and backward sampling.

    Returns
    -------
    np.ndarray
        One trajectory per batch row, shape (B, T + 1).
    """
    m_filt, p_filt, _, _ = _kalman_filter(model, y)
    a, q = model.a, model.sigma_u**2
    noise = streams.normal(y.shape[1])
    path = np.empty_like(y)
    path[:, -1] = m_filt[:, -1] + np.sqrt(p_filt[:, -1]) * noise[:, -1]
    for t in range(y.shape[1] - 2, -1, -1):
        # x_t given x_{t+1} and y_{0:t} is Gaussian: condition the filter on the next state.
        gain = a * p_filt[:, t] / (a**2 * p_filt[:, t] + q)
        mean = m_filt[:, t] + gain * (path[:, t + 1] - a * m_filt[:, t])
        variance = (1 - gain * a) * p_filt[:, t]
        path[:, t] = mean + np.sqrt(variance) * noise[:, t]
    return path


def path_statistics(path: np.ndarray) -> np.ndarray:
    """Evaluate the sufficient statistics S on trajectories of shape (B, T + 1)."""
    before, after = path[:, :-1], path[:, 1:]
    return np.stack([(before**2).sum(1), (before * after).sum(1), (after**2).sum(1)], axis=1)


def _normalise(log_weights: np.ndarray) -> np.ndarray:
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def _offset_cdf(weights: np.ndarray) -> np.ndarray:
    """Flatten per-row cumulative probabilities, each row shifted by its row number."""
    cdf = np.cumsum(weights, axis=1)
    cdf[:, -1] = 1.0
    return (cdf + np.arange(weights.shape[0])[:, None]).ravel()


def _categorical(cdf_offset: np.ndarray, n_categories: int, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw one index per entry of `rows` from that row's distribution by inversion.

    The row shift in `cdf_offset` lets one global `searchsorted` serve every row.
    """
    index = np.searchsorted(cdf_offset, rows + u, side="right") - rows * n_categories
    return np.clip(index, 0, n_categories - 1)


def backward_indices(
    model: Model,
    x_prev: np.ndarray,
    weights_prev: np.ndarray,
    cdf_offset: np.ndarray,
    x_new: np.ndarray,
    n_backward: int,
    streams: RandomStreams,
    max_rounds: int = 32,
) -> np.ndarray:
    """Draw PaRIS backward indices J with P(J = j) proportional to w_{t-1}^j q(x_{t-1}^j, x_t^i).

    With at most `EXACT_BACKWARD_MAX_PARTICLES` particles every draw is made from the
    exact O(N) categorical law. Otherwise accept-reject comes first: propose j from the
    filter weights and accept with probability q(x_{t-1}^j, x_t^i) / max q, which is
    exp(-(x_t^i - a x_{t-1}^j)^2 / (2 sigma_u^2)). Draws still pending after `max_rounds`
    rounds, or once few enough are left, are made from the exact law, so every index is
    an exact draw.

    Returns
    -------
    np.ndarray
        Indices of shape (B, N, n_backward).
    """
    batch, n = x_prev.shape
    if n <= EXACT_BACKWARD_MAX_PARTICLES:
        z = (x_new[:, :, None] - model.a[:, None, None] * x_prev[:, None, :]) / model.sigma_u[:, None, None]
        cdf = np.cumsum(weights_prev[:, None, :] * np.exp(-0.5 * z**2), axis=2)
        u = streams.uniform(n, n_backward) * cdf[:, :, -1:]
        index = (cdf[:, :, None, :] <= u[..., None]).sum(axis=3)
        return np.minimum(index, n - 1)

    indices = np.empty(batch * n * n_backward, dtype=np.intp)
    pending = np.arange(indices.size)
    row = pending // (n * n_backward)
    target = x_new.ravel()[pending // n_backward]
    for _ in range(max_rounds):
        if pending.size * n <= EXACT_FALLBACK_MAX_EVALUATIONS:
            break
        proposal = _categorical(cdf_offset, n, row, streams.uniform_at(row))
        z = (target - model.a[row] * np.take(x_prev.ravel(), proposal + row * n)) / model.sigma_u[row]
        accepted = streams.uniform_at(row) < np.exp(-0.5 * z**2)
        indices[pending[accepted]] = proposal[accepted]
        pending, row, target = pending[~accepted], row[~accepted], target[~accepted]

    if pending.size:
        z = (target[:, None] - model.a[row, None] * x_prev[row]) / model.sigma_u[row, None]
        cdf = np.cumsum(weights_prev[row] * np.exp(-0.5 * z**2), axis=1)
        u = streams.uniform_at(row) * cdf[:, -1]
        indices[pending] = np.minimum((cdf <= u[:, None]).sum(axis=1), n - 1)
    return indices.reshape(batch, n, n_backward)


def paris_sweep(
    model: Model,
    y: np.ndarray,
    n_particles: int,
    n_backward: int,
    streams: RandomStreams,
    reference: np.ndarray | None = None,
    conditioned: np.ndarray | None = None,
) -> SweepResult:
    """Run one bootstrap particle filter with PaRIS statistics, optionally conditional.

    Without a reference this is PaRIS: multinomial resampling at every step, and each
    particle's statistic tau_t^i is the average over `n_backward` backward draws J of
    tau_{t-1}^J + h_t(x_{t-1}^J, x_t^i). With a reference trajectory, the rows flagged
    in `conditioned` run conditional SMC. Their last particle slot contains the reference
    state at every time step and is never resampled away. Its statistic is updated with
    backward draws like that of any other particle.

    Parameters
    ----------
    model : Model
        Parameters, one set per batch row.
    y : np.ndarray
        Observations, shape (B, T + 1).
    n_particles : int
        Number of particles N, reference slot included.
    n_backward : int
        Backward draws per particle and time step (the PaRIS sample size).
    streams : RandomStreams
        Source of randomness, one stream per block of rows.
    reference : np.ndarray, optional
        Reference trajectories, shape (B, T + 1).
    conditioned : np.ndarray, optional
        Boolean mask of the rows that condition on their reference; all rows by default.

    Returns
    -------
    SweepResult
        The estimate of the smoothed statistics and a trajectory drawn from the
        backward-index tree.
    """
    batch, length = y.shape
    n = n_particles
    rows = np.arange(batch)
    if reference is None:
        slots = np.empty(0, dtype=np.intp)
    else:
        slots = rows if conditioned is None else np.flatnonzero(conditioned)

    x = model.sigma_0 * streams.normal(n)
    if slots.size:
        x[slots, -1] = reference[slots, 0]
    log_w = -0.5 * ((y[:, :1] - x) / model.sigma_v[:, None]) ** 2
    tau = np.zeros((batch, n, N_STATISTICS))
    states = np.empty((length, batch, n))
    states[0] = x
    # Only one of the backward draws per time step is kept for the path draw. Choosing
    # which one up front is equivalent to choosing it at the end because the choice is
    # uniform and independent of everything else.
    kept_draw = streams.integers(n_backward, length)
    kept_index = np.empty((length, batch, n), dtype=np.intp)
    ancestor_rows = np.repeat(rows, n)

    for t in range(1, length):
        weights = _normalise(log_w)
        cdf_offset = _offset_cdf(weights)
        ancestors = _categorical(cdf_offset, n, ancestor_rows, streams.uniform(n).ravel())
        x_new = model.a[:, None] * np.take(x.ravel(), ancestors + ancestor_rows * n).reshape(batch, n)
        x_new += model.sigma_u[:, None] * streams.normal(n)
        if slots.size:
            x_new[slots, -1] = reference[slots, t]

        j = backward_indices(model, x, weights, cdf_offset, x_new, n_backward, streams)
        flat_j = j + (rows * n)[:, None, None]
        x_back = np.take(x.ravel(), flat_j)
        tau = np.take(tau.reshape(batch * n, N_STATISTICS), flat_j, axis=0).mean(axis=2)
        tau[..., 0] += (x_back**2).mean(axis=2)
        tau[..., 1] += x_back.mean(axis=2) * x_new
        tau[..., 2] += x_new**2
        kept_index[t] = np.take_along_axis(j, kept_draw[:, t, None, None], axis=2)[..., 0]

        x = x_new
        states[t] = x
        log_w = -0.5 * ((y[:, t : t + 1] - x) / model.sigma_v[:, None]) ** 2

    weights = _normalise(log_w)
    estimate = np.einsum("bn,bns->bs", weights, tau)

    path = np.empty((batch, length))
    current = _categorical(_offset_cdf(weights), n, rows, streams.uniform())
    path[:, -1] = states[-1, rows, current]
    for t in range(length - 1, 0, -1):
        current = kept_index[t, rows, current]
        path[:, t - 1] = states[t - 1, rows, current]
    return SweepResult(estimate, path)


def ppg(
    model: Model,
    y: np.ndarray,
    n_particles: int,
    n_backward: int,
    n_sweeps: int,
    streams: RandomStreams,
) -> np.ndarray:
    """Run the PaRIS particle Gibbs sampler and return the estimate of every sweep.

    Sweep 0 is an ordinary PaRIS run whose tree provides the first reference trajectory.
    Each of the `n_sweeps` following sweeps is a conditional PaRIS run given the current
    reference. Its estimate is recorded, and a trajectory drawn from its backward-index
    tree becomes the next reference. The roll-out estimator with burn-in k0 is the mean
    of the estimates of sweeps k0 + 1, ..., n_sweeps.

    Returns
    -------
    np.ndarray
        Estimates of shape (n_sweeps + 1, B, 3); index 0 is the PaRIS sweep.
    """
    result = paris_sweep(model, y, n_particles, n_backward, streams)
    estimates = [result.estimate]
    for _ in range(n_sweeps):
        result = paris_sweep(model, y, n_particles, n_backward, streams, reference=result.path)
        estimates.append(result.estimate)
    return np.stack(estimates)
