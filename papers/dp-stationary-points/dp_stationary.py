"""Privacy accounting, data and the two private solvers of the dp-stationary-points chapter.

Accounting is in zero-concentrated differential privacy (zCDP): a Gaussian mechanism with l2
sensitivity ``s`` and noise standard deviation ``sigma`` is ``s**2 / (2 sigma**2)``-zCDP,
budgets add over adaptive releases, and ``rho``-zCDP implies
``(rho + 2 sqrt(rho log(1/delta)), delta)``-DP for every ``delta`` in (0, 1).

The loss is the sigmoid loss ``phi(y <w, x>)`` with ``phi(z) = 1 / (1 + exp(z))`` on features of
norm at most 1, so every per-sample loss is ``L``-Lipschitz and ``beta``-smooth with the
constants below.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats

LIPSCHITZ = 0.25  # max |phi'(z)| = 1/4, at z = 0
SMOOTHNESS = 1.0 / (6.0 * np.sqrt(3.0))  # max |phi''(z)|, at sigmoid(z) = 1/2 +- 1/(2 sqrt 3)


def zcdp_to_epsilon(rho: float, delta: float) -> float:
    """Convert ``rho``-zCDP to the epsilon of ``(epsilon, delta)``-DP."""
    return rho + 2.0 * np.sqrt(rho * np.log(1.0 / delta))


def zcdp_budget(epsilon: float, delta: float) -> float:
    """Return the largest ``rho`` whose zCDP guarantee implies ``(epsilon, delta)``-DP.

    Solves ``epsilon = rho + 2 sqrt(rho log(1/delta))``, a quadratic in ``sqrt(rho)``.
    """
    log_term = np.log(1.0 / delta)
    return float((np.sqrt(log_term + epsilon) - np.sqrt(log_term)) ** 2)


def gaussian_zcdp(sensitivity: float, sigma: float) -> float:
    """Return the zCDP parameter of one Gaussian mechanism."""
    return sensitivity**2 / (2.0 * sigma**2)


def gaussian_exact_delta(epsilon: float, sensitivity: float, sigma: float) -> float:
    """Return the exact delta of one Gaussian mechanism at ``epsilon``.

    The tight privacy profile of the Gaussian mechanism is
    ``delta(eps) = Phi(s / (2 sigma) - eps sigma / s) - exp(eps) Phi(-s / (2 sigma) - eps sigma / s)``;
    the chapter uses it to check that the zCDP conversion is conservative.
    """
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    return float(stats.norm.cdf(a - b) - np.exp(epsilon) * stats.norm.cdf(-a - b))


def dp_gd_sigma(n: int, rho: float, n_iters: int) -> float:
    """Noise std of DP-GD: ``n_iters`` full gradients of sensitivity ``2L/n`` share ``rho``."""
    return 2.0 * LIPSCHITZ / n * np.sqrt(n_iters / (2.0 * rho))


def spider_sigmas(n: int, rho: float, n_iters: int, period: int) -> tuple[float, float]:
    """Noise scales of Private SpiderBoost, each term taking half of ``rho``.

    Returns ``sigma_1``, the std added to the ``ceil(T / q)`` fresh gradients (sensitivity
    ``2L/n``), and ``sigma_2``, the std per unit of ``||w_t - w_{t-1}||`` added to the other
    gradient differences (sensitivity ``2 beta ||w_t - w_{t-1}|| / n``).
    """
    n_fresh = -(-n_iters // period)
    n_diff = n_iters - n_fresh
    sigma_1 = 2.0 * LIPSCHITZ / n * np.sqrt(n_fresh / rho)
    sigma_2 = 2.0 * SMOOTHNESS / n * np.sqrt(max(n_diff, 1) / rho)
    return float(sigma_1), float(sigma_2)


def spider_rho(n: int, n_iters: int, period: int, sigma_1: float, sigma_2: float) -> float:
    """Total zCDP of Private SpiderBoost with the given noise scales, by composition."""
    n_fresh = -(-n_iters // period)
    fresh = n_fresh * gaussian_zcdp(2.0 * LIPSCHITZ / n, sigma_1)
    # The difference noise is sigma_2 ||dw|| for sensitivity 2 beta ||dw|| / n, so ||dw|| cancels.
    differences = (n_iters - n_fresh) * gaussian_zcdp(2.0 * SMOOTHNESS / n, sigma_2)
    return fresh + differences


def make_data(
    rng: np.random.Generator, n: int, dim: int, signal: float = 0.6, flip: float = 0.1, rank: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a binary classification sample with features in the unit ball.

    Labels are +-1, flipped with probability ``flip``. A feature is ``signal * y0 * e_1`` plus an
    isotropic Gaussian part of expected norm ``1 - signal`` (``y0`` the clean label), projected on
    the unit ball. With ``rank`` the Gaussian part lives in a fixed random ``rank - 1``-dimensional
    subspace orthogonal to ``e_1``, so the design has rank ``rank``.
    """
    clean = rng.choice([-1.0, 1.0], size=n)
    y = np.where(rng.random(n) < flip, -clean, clean)
    if rank is None:
        spread = rng.standard_normal((n, dim)) * (1.0 - signal) / np.sqrt(dim)
    else:
        basis, _ = np.linalg.qr(rng.standard_normal((dim - 1, rank - 1)))
        spread = np.zeros((n, dim))
        spread[:, 1:] = rng.standard_normal((n, rank - 1)) @ basis.T * (1.0 - signal) / np.sqrt(rank - 1)
    x = spread
    x[:, 0] += signal * clean
    x /= np.maximum(1.0, np.linalg.norm(x, axis=1, keepdims=True))
    return x, y


def gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray, reg: float = 0.0) -> np.ndarray:
    """Return the gradients of the regularised empirical risk at the columns of ``w`` (shape (d, m)).

    The risk is the mean sigmoid loss plus ``reg / 2 ||w||^2``. The regulariser does not depend
    on the data, so it leaves every sensitivity unchanged.
    """
    s = special.expit(y[:, None] * (x @ w))
    weight = -s * (1.0 - s) * y[:, None]  # phi'(z) = -sigmoid(z) sigmoid(-z)
    return x.T @ weight / len(y) + reg * w


def loss(w: np.ndarray, x: np.ndarray, y: np.ndarray, reg: float = 0.0) -> np.ndarray:
    """Return the regularised empirical risk at the columns of ``w``."""
    return np.mean(special.expit(-y[:, None] * (x @ w)), axis=0) + 0.5 * reg * np.sum(w**2, axis=0)


def _noise(gens: Sequence[np.random.Generator], dim: int, n_configs: int) -> np.ndarray:
    # One block of columns per replicate, each drawn from that replicate's own generator.
    return np.concatenate([g.standard_normal((dim, n_configs)) for g in gens], axis=1)


def run_private(
    method: str,
    x: np.ndarray,
    y: np.ndarray,
    rho: float,
    step_sizes: np.ndarray,
    n_iters: np.ndarray,
    periods: np.ndarray,
    gens: Sequence[np.random.Generator],
    reg: float = 0.0,
) -> np.ndarray:
    """Run DP-GD or Private SpiderBoost for every configuration and replicate at once.

    Parameters
    ----------
    method : {"dp_gd", "spider"}
        The solver.
    x, y : numpy.ndarray
        The private data set.
    rho : float
        zCDP budget of every run.
    step_sizes, n_iters, periods : numpy.ndarray
        One entry per configuration: step size eta, iteration count T and restart period q
        (ignored by DP-GD).
    gens : sequence of numpy.random.Generator
        One generator per replicate; it draws all the noise of that replicate.
    reg : float
        Weight of the ridge term ``reg / 2 ||w||^2`` of the risk.

    Returns
    -------
    numpy.ndarray
        Shape (configurations, replicates): the mean of ``||grad F(w_t)||`` over ``t < T``,
        which is the expected gradient norm of the uniformly random iterate that both methods
        output.
    """
    n, dim = x.shape
    n_configs, n_reps = len(step_sizes), len(gens)
    eta = np.tile(np.asarray(step_sizes, float), n_reps)
    horizon = np.tile(np.asarray(n_iters), n_reps)
    period = np.tile(np.asarray(periods), n_reps)
    if method == "dp_gd":
        sigma = np.array([dp_gd_sigma(n, rho, int(t)) for t in horizon])
    elif method == "spider":
        pairs = np.array([spider_sigmas(n, rho, int(t), int(q)) for t, q in zip(horizon, period, strict=True)])
        sigma, sigma_diff = pairs[:, 0], pairs[:, 1]
    else:
        raise ValueError(f"method must be 'dp_gd' or 'spider', got {method!r}")

    w = np.zeros((dim, n_configs * n_reps))
    w_prev, grad_prev, estimate = w, None, None
    total = np.zeros(n_configs * n_reps)
    for t in range(int(horizon.max())):
        grad = gradient(w, x, y, reg)
        total += np.where(t < horizon, np.linalg.norm(grad, axis=0), 0.0)
        noise = _noise(gens, dim, n_configs)
        if method == "dp_gd":
            direction = grad + sigma * noise
        else:
            fresh = grad + sigma * noise
            if estimate is None:
                direction = fresh
            else:
                step = np.linalg.norm(w - w_prev, axis=0)
                update = estimate + grad - grad_prev + sigma_diff * step * noise
                direction = np.where(t % period == 0, fresh, update)
            estimate, grad_prev = direction, grad
        w_prev = w
        w = w - eta * direction
    return (total / horizon).reshape(n_reps, n_configs).T


def tune_and_run(
    method: str,
    x: np.ndarray,
    y: np.ndarray,
    rho: float,
    grid: Sequence[tuple[float, int, int]],
    tune_gens: Sequence[np.random.Generator],
    eval_gens: Sequence[np.random.Generator],
    reg: float = 0.0,
) -> tuple[tuple[float, int, int], np.ndarray]:
    """Pick the configuration with the smallest mean gap on tuning replicates, then rerun it.

    Parameters
    ----------
    grid : sequence of (step size, iteration count, restart period)
        The candidate configurations.
    tune_gens, eval_gens : sequence of numpy.random.Generator
        Generators of the tuning replicates and of the reported replicates, which must differ.

    Returns
    -------
    tuple
        The chosen configuration and the gaps of the reported replicates (see :func:`run_private`).
    """
    step_sizes, n_iters, periods = (np.array(column) for column in zip(*grid, strict=True))
    tuning = run_private(method, x, y, rho, step_sizes, n_iters, periods, tune_gens, reg)
    # A diverged run has an infinite or NaN gap; it must never be chosen.
    score = np.nan_to_num(tuning.mean(axis=1), nan=np.inf)
    best = int(np.argmin(score))
    chosen = (float(step_sizes[best]), int(n_iters[best]), int(periods[best]))
    gaps = run_private(method, x, y, rho, step_sizes[[best]], n_iters[[best]], periods[[best]], eval_gens, reg)
    return chosen, gaps[0]



def tree_levels(n_leaves: int) -> int:
    """Return the number of nodes of the binary aggregation tree over ``n_leaves`` leaves that contain one leaf."""
    return max(1, int(n_leaves).bit_length())


def tree_prefix_noise(node_noise: np.ndarray) -> np.ndarray:
    """Turn the node noises of a binary aggregation tree into the noises of its prefix sums.

    The node at level ``l`` with index ``k >= 1`` covers the leaves ``(k - 1) 2^l + 1, ..., k 2^l``.
    The prefix sum up to leaf ``t`` is the sum of the nodes ``(l, t >> l)`` over the set bits
    ``l`` of ``t``, so its noise is a sum of at most ``tree_levels(n_leaves)`` node noises.

    Parameters
    ----------
    node_noise : numpy.ndarray
        Shape (levels, n_leaves + 1, ...): the noise of node ``(l, k)`` at ``[l, k]`` (index 0 unused).

    Returns
    -------
    numpy.ndarray
        Shape (n_leaves + 1, ...): row ``t`` is the noise of the prefix sum up to leaf ``t``.
    """
    levels, rows = node_noise.shape[:2]
    prefix = np.zeros((rows, *node_noise.shape[2:]))
    for t in range(1, rows):
        for level in range(levels):
            if (t >> level) & 1:
                prefix[t] += node_noise[level, t >> level]
    return prefix


def draw_streams(gens: Sequence[np.random.Generator], n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one fresh sample of size ``n`` per replicate, with shapes (replicates, n, dim) and (replicates, n)."""
    pairs = [make_data(g, n, dim) for g in gens]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _batch_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    # w: (dim, reps), x: (reps, b, dim), y: (reps, b); one mini-batch gradient per replicate.
    s = special.expit(y * np.einsum("rbd,dr->rb", x, w))
    weight = -s * (1.0 - s) * y
    return np.einsum("rbd,rb->dr", x, weight) / x.shape[1] + reg * w


def one_pass(
    method: str,
    x: np.ndarray,
    y: np.ndarray,
    rho: float,
    step_size: float,
    batch: int,
    period: int,
    gens: Sequence[np.random.Generator],
    reg: float = 0.0,
    n_checkpoints: int = 16,
) -> np.ndarray:
    """Run one-pass DP-SGD or Tree-based Private Spider over per-replicate sample streams.

    Every sample is used in exactly one mini-batch, so a replaced sample changes only the
    releases of its own batch and the run is ``rho``-zCDP when each batch's releases are.

    DP-SGD takes ``n // batch`` steps ``w <- w - eta (g + N(0, sigma^2 I))`` with ``g`` the
    mini-batch gradient and ``sigma = (2L / batch) / sqrt(2 rho)``.

    Tree-based Private Spider works in phases of ``period`` steps with normalised steps
    ``w <- w - eta v / ||v||``. A phase starts with a gradient on a restart batch of
    ``period * batch`` samples plus ``N(0, sigma_1^2 I)``, ``sigma_1 = (2L / b_1) / sqrt(2 rho)``.
    Each later step draws a batch of ``batch`` samples and forms the gradient difference
    ``g(w_t) - g(w_{t-1})``. Its sensitivity is ``2 beta eta / batch`` because
    ``||w_t - w_{t-1}|| = eta``. The estimate is the restart gradient plus the prefix sum of the
    differences, released with tree aggregation. Every tree node gets ``N(0, sigma_2^2 I)`` with
    ``sigma_2 = (2 beta eta / batch) sqrt(levels / (2 rho))``, because each difference enters
    ``levels`` nodes.

    Parameters
    ----------
    method : {"dp_sgd", "tree_spider"}
        The solver.
    x, y : numpy.ndarray
        Streams of shape (replicates, n, dim) and (replicates, n), one per generator.
    rho : float
        zCDP budget of every run.
    step_size : float
        Step size eta (DP-SGD) or step length eta (Tree-based Private Spider).
    batch : int
        Mini-batch size of DP-SGD steps and of Spider gradient differences.
    period : int
        Phase length of Tree-based Private Spider (ignored by DP-SGD).
    gens : sequence of numpy.random.Generator
        One generator per replicate; it draws the noise of that replicate.
    reg : float
        Weight of the ridge term ``reg / 2 ||w||^2`` of the risk.
    n_checkpoints : int
        Number of evenly spaced iterates returned.

    Returns
    -------
    numpy.ndarray
        Shape (n_checkpoints, dim, replicates): iterates at the midpoints of ``n_checkpoints``
        equal stretches of the run, whose mean gradient norm estimates that of a uniformly
        random iterate. Empty (zero checkpoints) when the run has fewer than ``n_checkpoints`` iterations.
    """
    n_reps, n, dim = x.shape
    if method == "dp_sgd":
        n_iters = n // batch
        sigma = 2.0 * LIPSCHITZ / batch / np.sqrt(2.0 * rho)
    elif method == "tree_spider":
        restart = period * batch
        n_phases = n // (restart + (period - 1) * batch)
        n_iters = n_phases * period
        sigma = 2.0 * LIPSCHITZ / restart / np.sqrt(2.0 * rho)
        levels = tree_levels(period - 1)
        sigma_tree = 2.0 * SMOOTHNESS * step_size / batch * np.sqrt(levels / (2.0 * rho))
    else:
        raise ValueError(f"method must be 'dp_sgd' or 'tree_spider', got {method!r}")
    if n_iters < n_checkpoints:
        return np.zeros((0, dim, n_reps))
    keep = ((np.arange(n_checkpoints) + 0.5) * n_iters / n_checkpoints).astype(int)
    saved, w, used = [], np.zeros((dim, n_reps)), 0
    w_prev = w
    for t in range(n_iters):
        if t in keep:
            saved.append(w)
        if method == "dp_sgd":
            grad = _batch_gradient(w, x[:, used:used + batch], y[:, used:used + batch], reg)
            w = w - step_size * (grad + sigma * _noise(gens, dim, 1))
            used += batch
            continue
        j = t % period
        if j == 0:
            base = _batch_gradient(w, x[:, used:used + restart], y[:, used:used + restart], reg)
            base = base + sigma * _noise(gens, dim, 1)
            nodes = np.stack([_noise(gens, dim, 1) for _ in range(levels * period)]).reshape(levels, period, dim, n_reps)
            prefix_noise = sigma_tree * tree_prefix_noise(nodes)
            differences = np.zeros((dim, n_reps))
            used += restart
        else:
            xb, yb = x[:, used:used + batch], y[:, used:used + batch]
            differences += _batch_gradient(w, xb, yb, reg) - _batch_gradient(w_prev, xb, yb, reg)
            used += batch
        estimate = base + differences + prefix_noise[j]
        w_prev = w
        w = w - step_size * estimate / np.linalg.norm(estimate, axis=0)
    return np.stack(saved)


def population_gap(iterates: np.ndarray, x_pop: np.ndarray, y_pop: np.ndarray, reg: float = 0.0) -> np.ndarray:
    """Return the mean population gradient norm over the checkpoints, per replicate.

    The population gradient is estimated on the held-out sample ``(x_pop, y_pop)``. An empty
    set of checkpoints (a run too short for one checkpoint per stretch) gives an infinite gap.
    """
    if len(iterates) == 0:
        return np.full(iterates.shape[2], np.inf)
    n_checkpoints, dim, n_reps = iterates.shape
    grads = gradient(iterates.transpose(1, 0, 2).reshape(dim, -1), x_pop, y_pop, reg)
    return np.linalg.norm(grads, axis=0).reshape(n_checkpoints, n_reps).mean(axis=0)


def tune_one_pass(
    method: str,
    rho: float,
    grid: Sequence[tuple[float, int, int]],
    tune_gens: Sequence[np.random.Generator],
    eval_gens: Sequence[np.random.Generator],
    n: int,
    population: tuple[np.ndarray, np.ndarray],
    reg: float = 0.0,
) -> tuple[tuple[float, int, int], np.ndarray]:
    """Pick the one-pass configuration with the smallest mean population gap on tuning replicates.

    Each replicate draws its own stream of ``n`` samples from its generator, then its noise.

    Parameters
    ----------
    grid : sequence of (step size, batch, period)
        The candidate configurations.
    tune_gens, eval_gens : sequence of numpy.random.Generator
        Generators of the tuning replicates and of the reported replicates, which must differ.
    population : tuple of numpy.ndarray
        The held-out sample on which population gradients are estimated.

    Returns
    -------
    tuple
        The chosen configuration and the population gaps of the reported replicates.
    """
    dim = population[0].shape[1]
    x, y = draw_streams(tune_gens, n, dim)
    scores = []
    for eta, batch, period in grid:
        iterates = one_pass(method, x, y, rho, eta, batch, period, tune_gens, reg)
        scores.append(population_gap(iterates, *population, reg).mean())
    best = grid[int(np.argmin(np.nan_to_num(scores, nan=np.inf)))]
    x, y = draw_streams(eval_gens, n, dim)
    iterates = one_pass(method, x, y, rho, *best, eval_gens, reg)
    return best, population_gap(iterates, *population, reg)


# Generalised linear model of claim C3: robust regression on a low-rank design. The loss of the residual
# r = <w, x> - y is psi(r) = sqrt(1 + r^2) - 1 + log(1 + r^2 / 2) / 2, nonconvex because psi'' < 0 near
# |r| = sqrt(6). Since |psi'| tends to 1 as |r| grows, a noisy iterate cannot look stationary by drifting far away.
GLM_LIPSCHITZ = 1.0 + 1.0 / (2.0 * np.sqrt(2.0))  # bound on |psi'|: max of the two terms, 1 and 1/(2 sqrt 2)
GLM_SMOOTHNESS = 1.5  # max |psi''|, at r = 0, where both terms have their maximal curvature 1 and 1/2


def glm_link_derivative(residual: np.ndarray) -> np.ndarray:
    """Return ``psi'(r) = r / sqrt(1 + r^2) + r / (2 + r^2)``, the derivative of the robust loss."""
    return residual / np.sqrt(1.0 + residual**2) + residual / (2.0 + residual**2)


def glm_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the mean robust loss ``psi(<w, x> - y)`` at the columns of ``w``."""
    residual = x @ w - y[:, None]
    return np.mean(np.sqrt(1.0 + residual**2) - 1.0 + 0.5 * np.log1p(0.5 * residual**2), axis=0)


def glm_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the gradients of the mean robust loss at the columns of ``w`` (shape (p, m))."""
    return x.T @ glm_link_derivative(x @ w - y[:, None]) / len(y)


def draw_glm_sample(
    rng: np.random.Generator, n: int, coefficients: np.ndarray, noise: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` coordinates in the rank-``r`` feature subspace and their responses.

    The coordinates ``s`` are ``N(0, I_r / r)`` projected on the unit ball, so a feature
    ``x = U s`` with an orthonormal basis ``U`` has norm at most 1 in every ambient dimension.
    The response is ``<coefficients, s>`` plus ``noise`` times a Student-t(2) variable, whose
    heavy tail is what the robust loss is for.
    """
    rank = len(coefficients)
    s = rng.standard_normal((n, rank)) / np.sqrt(rank)
    s /= np.maximum(1.0, np.linalg.norm(s, axis=1, keepdims=True))
    return s, s @ coefficients + noise * rng.standard_t(2.0, size=n)


def jl_features(
    rng: np.random.Generator, x: np.ndarray, proj_dim: int, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Project the features with a Gaussian Johnson-Lindenstrauss matrix and rescale them into the unit ball.

    The matrix ``Phi`` has i.i.d. ``N(0, 1 / k)`` entries and does not depend on the data. The
    projected features are ``c Phi x`` with ``c = 1 / (1 + sqrt(rank / k))``, the inverse of the
    typical largest singular value of ``Phi`` on a rank-``rank`` subspace, and
    any feature still longer than 1 is projected on the unit ball. The map is applied to each
    sample separately, so every sensitivity of the projected problem is that of features of norm at most 1.

    Returns
    -------
    tuple of numpy.ndarray
        The projected features, shape (n, k), and the lifting matrix ``c Phi^T``, shape (d, k):
        the iterate ``v`` in the projected space is the ambient predictor ``c Phi^T v``.
    """
    phi = rng.standard_normal((proj_dim, x.shape[1])) / np.sqrt(proj_dim)
    scale = 1.0 / (1.0 + np.sqrt(rank / proj_dim))
    z = scale * x @ phi.T
    z /= np.maximum(1.0, np.linalg.norm(z, axis=1, keepdims=True))
    return z, scale * phi.T


def glm_spider_sigmas(n: int, rho: float, n_iters: int, period: int) -> tuple[float, float]:
    """Return the noise scales of Private SpiderBoost on the robust GLM, each kind of release taking half of ``rho``.

    Same split as :func:`spider_sigmas`, with the Lipschitz and smoothness constants of the robust loss.
    """
    n_fresh = -(-n_iters // period)
    n_diff = n_iters - n_fresh
    sigma_1 = 2.0 * GLM_LIPSCHITZ / n * np.sqrt(n_fresh / rho)
    sigma_2 = 2.0 * GLM_SMOOTHNESS / n * np.sqrt(max(n_diff, 1) / rho)
    return float(sigma_1), float(sigma_2)


def population_glm_norm(coordinates: np.ndarray, s_pop: np.ndarray, y_pop: np.ndarray) -> np.ndarray:
    """Return ``||grad F(w)||`` on the held-out sample for predictors given by their subspace coordinates.

    With features ``x = U s`` and ``U`` orthonormal, ``<w, x> = <U^T w, s>`` and the gradient
    ``E[psi'(<w, x> - y) x]`` has the norm of ``E[psi'(<U^T w, s> - y) s]``, so the ambient
    gradient norm is computed exactly in ``r`` dimensions. ``coordinates`` is ``U^T w``, shape (r, m).
    """
    return np.linalg.norm(glm_gradient(coordinates, s_pop, y_pop), axis=0)


def run_glm_spider(
    features: np.ndarray,
    y: np.ndarray,
    rho: float,
    step_sizes: np.ndarray,
    n_iters: np.ndarray,
    periods: np.ndarray,
    gen: np.random.Generator,
    to_coordinates: np.ndarray,
    population: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Run Private SpiderBoost on the robust GLM for every configuration of one replicate.

    The updates are those of :func:`run_private` (method ``"spider"``) with the constants of the
    robust loss. After every step the population gradient norm of the current predictor is
    evaluated through ``to_coordinates``, the (r, p) matrix that maps an iterate to ``U^T w``.

    Returns
    -------
    numpy.ndarray
        Shape (configurations,): the mean population gradient norm over the iterates
        ``w_0, ..., w_{T-1}``, the expected gap of the uniformly random output.
    """
    n, dim = features.shape
    eta = np.asarray(step_sizes, float)
    horizon = np.asarray(n_iters)
    period = np.asarray(periods)
    pairs = np.array([glm_spider_sigmas(n, rho, int(t), int(q)) for t, q in zip(horizon, period, strict=True)])
    sigma, sigma_diff = pairs[:, 0], pairs[:, 1]

    w = np.zeros((dim, len(eta)))
    w_prev, grad_prev, estimate = w, None, None
    total = np.zeros(len(eta))
    for t in range(int(horizon.max())):
        pop_norm = population_glm_norm(to_coordinates @ w, *population)
        total += np.where(t < horizon, pop_norm, 0.0)
        grad = glm_gradient(w, features, y)
        noise = gen.standard_normal((dim, len(eta)))
        fresh = grad + sigma * noise
        if estimate is None:
            direction = fresh
        else:
            step = np.linalg.norm(w - w_prev, axis=0)
            update = estimate + grad - grad_prev + sigma_diff * step * noise
            direction = np.where(t % period == 0, fresh, update)
        estimate, grad_prev = direction, grad
        w_prev = w
        w = w - eta * direction
    return total / horizon


def tune_glm_spider(
    arm: str,
    x: np.ndarray,
    y: np.ndarray,
    basis: np.ndarray,
    rho: float,
    grid: Sequence[tuple[float, int, int]],
    tune_gens: Sequence[np.random.Generator],
    eval_gens: Sequence[np.random.Generator],
    proj_dim: int,
    population: tuple[np.ndarray, np.ndarray],
) -> tuple[tuple[float, int, int], np.ndarray]:
    """Tune and run Private SpiderBoost on the robust GLM in the ambient space or after a JL projection.

    Parameters
    ----------
    arm : {"ambient", "projected"}
        ``"ambient"`` runs on the features ``x`` in all ``d`` dimensions. ``"projected"`` first draws
        a JL matrix from the replicate's generator (:func:`jl_features`), runs in ``proj_dim``
        dimensions and lifts every iterate back to ``R^d``.
    x, y : numpy.ndarray
        The private sample, features of shape (n, d) in the span of ``basis``.
    basis : numpy.ndarray
        Orthonormal basis ``U`` of the feature subspace, shape (d, r); it only serves to
        evaluate population gradients (:func:`population_glm_norm`).
    grid : sequence of (step size, iteration count, restart period)
        The candidate configurations.
    tune_gens, eval_gens : sequence of numpy.random.Generator
        Generators of the tuning replicates and of the reported replicates, which must differ.

    Returns
    -------
    tuple
        The configuration with the smallest mean population gap on the tuning replicates and the
        population gaps of the reported replicates.
    """
    if arm not in ("ambient", "projected"):
        raise ValueError(f"arm must be 'ambient' or 'projected', got {arm!r}")
    step_sizes, n_iters, periods = (np.array(column) for column in zip(*grid, strict=True))

    def run(gen: np.random.Generator, pick: slice | list[int]) -> np.ndarray:
        if arm == "ambient":
            features, to_coordinates = x, basis.T
        else:
            features, lift = jl_features(gen, x, proj_dim, basis.shape[1])
            to_coordinates = basis.T @ lift
        return run_glm_spider(features, y, rho, step_sizes[pick], n_iters[pick], periods[pick], gen,
                              to_coordinates, population)

    tuning = np.array([run(gen, slice(None)) for gen in tune_gens])
    # A diverged run has an infinite or NaN gap; it must never be chosen.
    best = int(np.argmin(np.nan_to_num(tuning.mean(axis=0), nan=np.inf)))
    chosen = (float(step_sizes[best]), int(n_iters[best]), int(periods[best]))
    return chosen, np.array([run(gen, [best])[0] for gen in eval_gens])
