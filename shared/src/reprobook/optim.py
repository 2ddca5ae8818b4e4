"""Shared tools of the optimisation chapters: rates, test problems and convergence figures.

Rates
    :func:`fit_rate` fits ``log(error)`` against ``log(iteration)`` (a sublinear rate
    ``error ~ C t^slope``) or against ``iteration`` (a linear rate ``error ~ C exp(slope t)``)
    over a window chosen by :func:`rate_window`. :func:`rate_columns` turns per-seed traces into
    the long-format columns that ``paper.record`` takes for a ``slope`` rule, so the rule fits
    exactly the points that :func:`fit_rate` fits and bootstraps the slope over seeds.

Test problems
    Seeded generators with known optima: :func:`least_squares`, :func:`logistic_regression`
    (separable or not), :func:`matrix_sensing` (Gaussian measurements with optional outliers or
    dense noise) and :func:`equality_qp` (optimum from the KKT system).

Traces and figures
    :class:`Trace` stores per-iteration metrics of one run; :func:`plot_traces` draws the median
    and the spread over seeds of groups of traces, so every convergence figure looks the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg

RATE_KINDS = ("sublinear", "linear")
EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Trace:
    """Per-iteration metrics of one optimisation run.

    Attributes
    ----------
    iteration : numpy.ndarray
        Iteration indices (or oracle calls) at which the metrics were taken, strictly increasing.
    metrics : mapping of str to numpy.ndarray
        One array per metric, each as long as ``iteration``.
    label : str
        Method or setting name; :func:`plot_traces` draws one line per label.
    seed : int or None
        Seed of the run, the resampling unit of the rules.
    """

    iteration: np.ndarray
    metrics: Mapping[str, np.ndarray]
    label: str = ""
    seed: int | None = None

    def __post_init__(self) -> None:
        iteration = np.asarray(self.iteration)
        if iteration.ndim != 1 or len(iteration) == 0:
            raise ValueError(f"Trace.iteration must be a non-empty 1-D array, got shape {iteration.shape}")
        if np.any(np.diff(iteration) <= 0):
            raise ValueError("Trace.iteration must be strictly increasing")
        metrics = {name: np.asarray(values, dtype=float) for name, values in self.metrics.items()}
        for name, values in metrics.items():
            if values.shape != iteration.shape:
                raise ValueError(f"metric '{name}' has shape {values.shape} but iteration has shape {iteration.shape}")
        object.__setattr__(self, "iteration", iteration)
        object.__setattr__(self, "metrics", metrics)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.metrics:
            raise KeyError(f"metric '{name}' not in trace; recorded metrics: {', '.join(self.metrics)}")
        return self.metrics[name]

    def fit(self, metric: str, kind: str = "sublinear", **window: Any) -> RateFit:
        """Fit the rate of one metric; ``window`` goes to :func:`rate_window`."""
        return fit_rate(self.iteration, self[metric], kind=kind, **window)


def traces_from_array(
    iteration: np.ndarray,
    values: np.ndarray,
    metric: str,
    label: str = "",
    seeds: Sequence[int] | None = None,
) -> list[Trace]:
    """Split an ``(iterations, runs)`` array into one :class:`Trace` per run.

    Parameters
    ----------
    iteration : numpy.ndarray
        Iteration indices, shape ``(iterations,)``.
    values : numpy.ndarray
        Metric values, shape ``(iterations, runs)``, as vectorised solvers produce them.
    metric : str
        Name of the metric in each trace.
    label : str
        Label of every trace.
    seeds : sequence of int, optional
        Seed of each run; defaults to ``0, 1, ...``.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (iterations, runs), got {values.shape}")
    seeds = list(range(values.shape[1])) if seeds is None else list(seeds)
    if len(seeds) != values.shape[1]:
        raise ValueError(f"{len(seeds)} seeds given for {values.shape[1]} runs")
    return [Trace(iteration, {metric: values[:, j]}, label, seed) for j, seed in enumerate(seeds)]


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class RateFit:
    """Least-squares fit of a convergence rate over a window of a trace.

    Attributes
    ----------
    kind : str
        ``"sublinear"``: ``log(error) = intercept + slope * log(t)``;
        ``"linear"``: ``log(error) = intercept + slope * t``.
    slope, intercept : float
        Fitted coefficients (natural logarithms); NaN when :attr:`is_rate` is false.
    r_squared : float
        Coefficient of determination of the fit on the window points.
    iteration, error : numpy.ndarray
        The window points the fit used.
    is_rate : bool
        False when the trace does not decrease enough for a rate to be measured.
    reason : str
        Why :attr:`is_rate` is false, empty otherwise.
    """

    kind: str
    slope: float
    intercept: float
    r_squared: float
    iteration: np.ndarray = field(repr=False)
    error: np.ndarray = field(repr=False)
    is_rate: bool = True
    reason: str = ""

    def predict(self, iteration: np.ndarray) -> np.ndarray:
        """Return the fitted error at the given iterations."""
        t = np.asarray(iteration, dtype=float)
        x = np.log(t) if self.kind == "sublinear" else t
        return np.exp(self.intercept + self.slope * x)


def rate_window(
    iteration: np.ndarray,
    error: np.ndarray,
    kind: str = "sublinear",
    start_fraction: float = 0.5,
    floor: float | None = None,
    floor_factor: float = 1.0e3,
    max_points: int = 60,
) -> np.ndarray:
    """Select the points of a trace over which a rate is fitted.

    The rule is deterministic and uses the trace alone:

    1. Points with a non-finite or non-positive error are dropped, and so is ``t <= 0`` for a
       sublinear fit (``log t`` is undefined there).
    2. The window starts after the last point whose error exceeds ``start_fraction`` times the
       error ``e_0`` of the first kept point, which skips the initial transient.
    3. The window ends before the first point whose error is under the floor. The floor is
       ``max(floor, floor_factor * eps * e_0)``, with ``e_0`` the first error and ``eps`` the
       float64 machine epsilon, so rounding plateaus are left out. Pass ``floor`` for a
       statistical noise level.
    4. For a sublinear fit, at most ``max_points`` points spaced evenly in ``log t`` are kept
       (the point nearest each grid value), so that the many late iterates do not outweigh the
       early decades. A linear fit keeps at most ``max_points`` points evenly spaced in ``t``.

    Parameters
    ----------
    iteration, error : numpy.ndarray
        The trace.
    kind : {"sublinear", "linear"}
        Which rate is fitted.
    start_fraction : float
        Fraction of the first error below which the window starts, in (0, 1].
    floor : float, optional
        Noise level under which errors are not fitted.
    floor_factor : float
        Multiple of ``eps * e_0`` that sets the machine-precision floor.
    max_points : int
        Maximum number of points in the window.

    Returns
    -------
    numpy.ndarray
        Indices into ``iteration`` of the window points, increasing; empty when no window exists.
    """
    if kind not in RATE_KINDS:
        raise ValueError(f"rate kind must be one of {', '.join(RATE_KINDS)}, got {kind!r}")
    if not 0 < start_fraction <= 1:
        raise ValueError(f"start_fraction must lie in (0, 1], got {start_fraction}")
    t = np.asarray(iteration, dtype=float)
    e = np.asarray(error, dtype=float)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError(f"iteration and error must be 1-D of equal length, got {t.shape} and {e.shape}")

    valid = np.isfinite(e) & (e > 0)
    if kind == "sublinear":
        valid &= t > 0
    kept = np.flatnonzero(valid)
    if len(kept) == 0:
        return kept
    e0 = e[kept[0]]
    lowest = max(floor or 0.0, floor_factor * EPS * e0)

    # The start follows the last point above the start level, and the end precedes the first
    # point under the floor. Picking the first low point instead would select a low noise draw
    # and flatten the fitted slope of a noisy trace.
    above_start = np.flatnonzero(e[kept] > start_fraction * e0)
    under_floor = np.flatnonzero(e[kept] < lowest)
    first = above_start[-1] + 1 if len(above_start) else 0
    last = under_floor[0] - 1 if len(under_floor) else len(kept) - 1
    if last < first:
        return kept[:0]
    window = kept[first : last + 1]

    if len(window) > max_points:
        x = np.log(t[window]) if kind == "sublinear" else t[window]
        grid = np.linspace(x[0], x[-1], max_points)
        nearest = np.unique(np.abs(x[None, :] - grid[:, None]).argmin(axis=1))
        window = window[nearest]
    return window


def fit_rate(
    iteration: np.ndarray,
    error: np.ndarray,
    kind: str = "sublinear",
    min_points: int = 5,
    min_decrease: float = 10.0,
    **window: Any,
) -> RateFit:
    """Fit a convergence rate over the window of :func:`rate_window`.

    A trace is called a rate only when the window has at least ``min_points`` points and the
    fitted line falls by at least a factor ``min_decrease`` across the window. A flat or
    noisy trace therefore gives ``is_rate=False`` and a NaN slope, never a slope near 0.

    Parameters
    ----------
    iteration, error : numpy.ndarray
        The trace.
    kind : {"sublinear", "linear"}
        ``"sublinear"`` fits ``log(error)`` against ``log(t)``; ``"linear"`` against ``t``.
    min_points : int
        Minimum number of window points.
    min_decrease : float
        Minimum factor by which the fitted error falls across the window.
    **window
        Arguments of :func:`rate_window` (``start_fraction``, ``floor``, ``floor_factor``,
        ``max_points``).

    Returns
    -------
    RateFit
    """
    t = np.asarray(iteration, dtype=float)
    e = np.asarray(error, dtype=float)
    index = rate_window(t, e, kind=kind, **window)
    t_win, e_win = t[index], e[index]

    def no_rate(reason: str) -> RateFit:
        return RateFit(kind, np.nan, np.nan, np.nan, t_win, e_win, is_rate=False, reason=reason)

    if len(index) < min_points:
        return no_rate(
            f"the window has {len(index)} points and a rate needs {min_points}: the error never falls "
            "below the start fraction of its first value, or it reaches the floor at once"
        )
    x = np.log(t_win) if kind == "sublinear" else t_win
    y = np.log(e_win)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r_squared = 1.0 - np.sum(residual**2) / total if total > 0 else 0.0
    drop = float(np.exp(-slope * (x[-1] - x[0])))
    if drop < min_decrease:
        return RateFit(
            kind,
            np.nan,
            np.nan,
            float(r_squared),
            t_win,
            e_win,
            is_rate=False,
            reason=f"the fitted error falls by a factor {drop:.3g} across the window, less than {min_decrease:g}",
        )
    return RateFit(kind, float(slope), float(intercept), float(r_squared), t_win, e_win)


def rate_columns(
    traces: Sequence[Trace],
    metric: str,
    kind: str = "sublinear",
    flat: str = "nan",
    against: str = "iteration",
    **fit: Any,
) -> dict[str, np.ndarray]:
    """Turn per-seed traces into long-format columns for a ``slope`` rule.

    Each trace contributes the window points of :func:`fit_rate` as rows ``(seed, against,
    metric)``, so a rule ``{kind: slope, measure: METRIC, against: AGAINST, log: both}``
    (``log: y`` for ``kind="linear"``) fits per seed the same line as :func:`fit_rate` and
    bootstraps its mean over seeds.

    Parameters
    ----------
    traces : sequence of Trace
        One trace per seed, each with a distinct ``seed``.
    metric : str
        The metric to fit.
    kind : {"sublinear", "linear"}
        Rate kind, as in :func:`fit_rate`.
    flat : {"nan", "whole", "raise"}
        What a trace that is not a rate contributes: ``"nan"`` writes its first and last points
        with a NaN metric, so the rule returns ``inconclusive`` and its detail names the NaN values; ``"whole"`` writes
        every positive point of the trace, so a stalled run counts with its near-zero slope;
        ``"raise"`` raises :class:`ValueError`.
    against : str
        Name of the iteration column.
    **fit
        Arguments of :func:`fit_rate`.

    Returns
    -------
    dict of str to numpy.ndarray
        Columns ``seed``, ``against`` and ``metric``, of equal length.
    """
    if flat not in ("nan", "whole", "raise"):
        raise ValueError(f"flat must be one of nan, whole, raise, got {flat!r}")
    seeds = [trace.seed for trace in traces]
    if any(seed is None for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError("every trace needs a distinct seed, the resampling unit of the slope rule")
    rows_seed, rows_t, rows_e = [], [], []
    for trace in traces:
        result = fit_rate(trace.iteration, trace[metric], kind=kind, **fit)
        if result.is_rate:
            t, e = result.iteration, result.error
        elif flat == "raise":
            raise ValueError(f"trace of seed {trace.seed} ({trace.label or 'no label'}) is not a rate: {result.reason}")
        elif flat == "whole":
            keep = np.isfinite(trace[metric]) & (trace[metric] > 0)
            if kind == "sublinear":
                keep &= trace.iteration > 0
            t, e = trace.iteration[keep], trace[metric][keep]
        else:
            positive = trace.iteration[trace.iteration > 0] if kind == "sublinear" else trace.iteration
            t = np.array([positive[0], positive[-1]], dtype=float)
            e = np.full(2, np.nan)
        rows_seed.append(np.full(len(t), trace.seed))
        rows_t.append(np.asarray(t, dtype=float))
        rows_e.append(np.asarray(e, dtype=float))
    return {"seed": np.concatenate(rows_seed), against: np.concatenate(rows_t), metric: np.concatenate(rows_e)}


# --------------------------------------------------------------------------- test problems


@dataclass(frozen=True)
class LeastSquares:
    """Least squares ``f(x) = ||A x - b||^2 / (2 n)`` with its minimiser.

    Attributes
    ----------
    A : numpy.ndarray
        Design, shape ``(n, d)``, full column rank.
    b : numpy.ndarray
        Targets ``A x_planted + noise``.
    x_planted : numpy.ndarray
        Coefficients that generated ``b``.
    x_star : numpy.ndarray
        Minimiser, from the normal equations.
    f_star : float
        Minimum value.
    L, mu : float
        Largest and smallest eigenvalue of ``A^T A / n`` (smoothness and strong convexity).
    """

    A: np.ndarray
    b: np.ndarray
    x_planted: np.ndarray
    x_star: np.ndarray
    f_star: float
    L: float
    mu: float

    def value(self, x: np.ndarray) -> np.ndarray:
        """Return ``f`` at ``x`` of shape ``(d,)`` or ``(d, k)`` (one column per point)."""
        residual = self.A @ x - (self.b if np.ndim(x) == 1 else self.b[:, None])
        return 0.5 * np.mean(residual**2, axis=0)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Return ``A^T (A x - b) / n`` at ``x`` of shape ``(d,)`` or ``(d, k)``."""
        residual = self.A @ x - (self.b if np.ndim(x) == 1 else self.b[:, None])
        return self.A.T @ residual / len(self.b)


def least_squares(
    rng: np.random.Generator,
    n: int,
    d: int,
    noise_std: float = 0.0,
    condition_number: float = 1.0,
) -> LeastSquares:
    """Draw a least-squares problem with Gaussian design and a known minimiser.

    The columns of a standard Gaussian design are scaled by factors spaced geometrically from 1
    to ``1 / sqrt(condition_number)``, so the condition number of ``A^T A`` is about
    ``condition_number`` (exactly so only in expectation).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n, d : int
        Samples and features, ``n >= d``.
    noise_std : float
        Standard deviation of the Gaussian noise on ``b``; with 0, ``x_star = x_planted``.
    condition_number : float
        Spread of the column scales.
    """
    if n < d:
        raise ValueError(f"least squares needs n >= d for a unique minimiser, got n={n}, d={d}")
    scales = np.geomspace(1.0, 1.0 / np.sqrt(condition_number), d)
    A = rng.standard_normal((n, d)) * scales
    x_planted = rng.standard_normal(d)
    b = A @ x_planted + noise_std * rng.standard_normal(n)
    x_star = linalg.solve(A.T @ A, A.T @ b, assume_a="pos")
    eigenvalues = linalg.eigvalsh(A.T @ A / n)
    f_star = float(0.5 * np.mean((A @ x_star - b) ** 2))
    return LeastSquares(A, b, x_planted, x_star, f_star, float(eigenvalues[-1]), float(eigenvalues[0]))


@dataclass(frozen=True)
class Logistic:
    """Logistic regression ``f(x) = mean_i log(1 + exp(-y_i a_i^T x)) + ridge ||x||^2 / 2``.

    Attributes
    ----------
    A : numpy.ndarray
        Features, shape ``(n, d)``.
    y : numpy.ndarray
        Labels in {-1, 1}.
    ridge : float
        L2 penalty.
    separable : bool
        Whether the data are linearly separable by construction.
    x_star : numpy.ndarray or None
        Minimiser; None for separable data without ridge, where the infimum 0 is not attained.
    f_star : float
        Minimum (or infimum) value.
    direction : numpy.ndarray or None
        For separable data, a unit vector with ``y_i a_i^T direction >= margin`` for all i.
    margin : float
        The margin of ``direction``; 0 for non-separable data.
    """

    A: np.ndarray
    y: np.ndarray
    ridge: float
    separable: bool
    x_star: np.ndarray | None
    f_star: float
    direction: np.ndarray | None
    margin: float

    def value(self, x: np.ndarray) -> float:
        """Return ``f(x)``, computed stably with ``logaddexp``."""
        margins = self.y * (self.A @ x)
        return float(np.mean(np.logaddexp(0.0, -margins)) + 0.5 * self.ridge * x @ x)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Return the gradient of ``f`` at ``x``."""
        margins = self.y * (self.A @ x)
        weights = -self.y * _sigmoid(-margins)
        return self.A.T @ weights / len(self.y) + self.ridge * x

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """Return the Hessian of ``f`` at ``x``."""
        p = _sigmoid(self.y * (self.A @ x))
        curvature = p * (1.0 - p)
        return (self.A.T * curvature) @ self.A / len(self.y) + self.ridge * np.eye(self.A.shape[1])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def logistic_regression(
    rng: np.random.Generator,
    n: int,
    d: int,
    separable: bool = False,
    margin: float = 0.1,
    ridge: float = 0.0,
    signal: float = 2.0,
    newton_tol: float = 1e-12,
) -> Logistic:
    """Draw a logistic-regression problem with a known optimum.

    Features are standard Gaussian divided by ``sqrt(d)`` (so ``||a_i||`` is about 1).

    * ``separable=True``: labels are the sign of ``a_i^T w`` for a random unit ``w``, and
      samples with ``|a_i^T w| < margin`` are redrawn, so ``w`` separates with margin
      ``margin``. Without ridge the infimum ``f_star = 0`` is approached along ``w`` and not
      attained, so ``x_star`` is None.
    * ``separable=False``: labels follow the logistic model with coefficients ``signal * w``,
      and one sample is repeated with the opposite label so the data can never be separated.
      ``x_star`` is computed by Newton's method and checked to have gradient norm at most
      ``newton_tol``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n, d : int
        Samples and features.
    separable : bool
        Which of the two cases above.
    margin : float
        Margin of the separable case.
    ridge : float
        L2 penalty; any positive value gives a unique minimiser in both cases.
    signal : float
        Norm of the logistic-model coefficients of the non-separable case.
    newton_tol : float
        Gradient-norm tolerance of the Newton solve.
    """
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    if separable:
        rows = []
        while sum(len(r) for r in rows) < n:
            batch = rng.standard_normal((2 * n, d)) / np.sqrt(d)
            rows.append(batch[np.abs(batch @ w) >= margin])
        A = np.concatenate(rows)[:n]
        y = np.sign(A @ w)
    else:
        A = rng.standard_normal((n, d)) / np.sqrt(d)
        y = np.where(rng.random(n) < _sigmoid(signal * A @ w), 1.0, -1.0)
        A = np.vstack([A, A[:1]])
        y = np.append(y, -y[0])
    problem = Logistic(A, y, ridge, separable, None, 0.0, w if separable else None, margin if separable else 0.0)
    if separable and ridge == 0:
        return problem
    x = np.zeros(d)
    for _ in range(100):
        g = problem.gradient(x)
        if np.linalg.norm(g) <= newton_tol:
            break
        x = x - _damped_newton_step(problem, x, g)
    else:
        raise ValueError(
            f"Newton's method did not reach gradient norm {newton_tol:g} in 100 steps; "
            "the data may be nearly separable, so add a ridge or more samples"
        )
    return Logistic(A, y, ridge, separable, x, problem.value(x), problem.direction, problem.margin)


def _damped_newton_step(problem: Logistic, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Return a Newton step halved until the objective decreases (Armijo, factor 1e-4)."""
    step = linalg.solve(problem.hessian(x), g, assume_a="pos")
    f0, scale = problem.value(x), 1.0
    while problem.value(x - scale * step) > f0 - 1e-4 * scale * (g @ step) and scale > 1e-10:
        scale *= 0.5
    return scale * step


@dataclass(frozen=True)
class MatrixSensing:
    """Low-rank matrix sensing ``y_i = <A_i, X_star> + s_i`` with Gaussian ``A_i``.

    Attributes
    ----------
    A : numpy.ndarray
        Measurement matrices, shape ``(m, d, d)``; symmetric ``(G + G^T) / 2`` in the symmetric
        case, so that ``<A_i, X>`` is ``N(0, ||X||_F^2)`` for every symmetric ``X`` and
        ``(1/m) sum_i <A_i, X>^2`` concentrates at ``||X||_F^2`` (restricted isometry).
    y : numpy.ndarray
        Measurements, shape ``(m,)``.
    X_star : numpy.ndarray
        Ground truth: ``V V^T`` (symmetric) or ``U V^T``, rank ``rank``.
    factors : tuple of numpy.ndarray
        ``(V,)`` or ``(U, V)`` with ``X_star`` their product.
    corrupted : numpy.ndarray
        Boolean mask of the measurements replaced by outliers.
    """

    A: np.ndarray
    y: np.ndarray
    X_star: np.ndarray
    factors: tuple[np.ndarray, ...]
    corrupted: np.ndarray

    @property
    def operator(self) -> np.ndarray:
        """The measurement map as an ``(m, d*d)`` matrix acting on ``X.ravel()``."""
        return self.A.reshape(len(self.A), -1)

    def measure(self, X: np.ndarray) -> np.ndarray:
        """Return ``(<A_i, X>)_i``."""
        return self.operator @ X.ravel()

    def adjoint(self, r: np.ndarray) -> np.ndarray:
        """Return ``sum_i r_i A_i``."""
        d = self.A.shape[1]
        return (r @ self.operator).reshape(d, d)

    def relative_error(self, X: np.ndarray) -> float:
        """Return ``||X - X_star||_F / ||X_star||_F``."""
        return float(np.linalg.norm(X - self.X_star) / np.linalg.norm(self.X_star))

    def l1_loss(self, X: np.ndarray) -> float:
        """Return ``(1/m) sum_i |<A_i, X> - y_i|``."""
        return float(np.mean(np.abs(self.measure(X) - self.y)))

    def l2_loss(self, X: np.ndarray) -> float:
        """Return ``(1/(2m)) sum_i (<A_i, X> - y_i)^2``."""
        return float(0.5 * np.mean((self.measure(X) - self.y) ** 2))


def matrix_sensing(
    rng: np.random.Generator,
    d: int,
    rank: int,
    m: int,
    symmetric: bool = True,
    outlier_fraction: float = 0.0,
    outlier_scale: float = 10.0,
    noise_std: float = 0.0,
    condition_number: float = 1.0,
) -> MatrixSensing:
    """Draw a low-rank matrix-sensing problem with Gaussian measurements.

    The ground truth has singular values spaced geometrically from 1 to
    ``1 / condition_number`` and orthonormal random singular vectors, so ``||X_star||_2 = 1``.
    A random set of ``round(outlier_fraction * m)`` measurements is replaced by
    ``N(0, outlier_scale^2)`` values drawn independently of the ``A_i``; ``noise_std`` adds dense
    Gaussian noise to every measurement. Without outliers and noise, ``X_star`` is a zero of
    both losses.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    d : int
        Matrix size (``d x d``).
    rank : int
        Rank of ``X_star``.
    m : int
        Number of measurements.
    symmetric : bool
        PSD ground truth with symmetric ``A_i``, or a general ``U V^T`` with general ``A_i``.
    outlier_fraction : float
        Share of corrupted measurements, in [0, 1).
    outlier_scale : float
        Standard deviation of the outlier values.
    noise_std : float
        Standard deviation of the dense noise.
    condition_number : float
        Ratio of the largest to the smallest non-zero singular value of ``X_star``.
    """
    if not 0 <= outlier_fraction < 1:
        raise ValueError(f"outlier_fraction must lie in [0, 1), got {outlier_fraction}")
    sigma = np.geomspace(1.0, 1.0 / condition_number, rank)
    left = np.linalg.qr(rng.standard_normal((d, rank)))[0]
    if symmetric:
        factors: tuple[np.ndarray, ...] = (left * np.sqrt(sigma),)
        X_star = factors[0] @ factors[0].T
        G = rng.standard_normal((m, d, d))
        A = 0.5 * (G + G.transpose(0, 2, 1))
    else:
        right = np.linalg.qr(rng.standard_normal((d, rank)))[0]
        factors = (left * np.sqrt(sigma), right * np.sqrt(sigma))
        X_star = factors[0] @ factors[1].T
        A = rng.standard_normal((m, d, d))
    y = A.reshape(m, -1) @ X_star.ravel() + noise_std * rng.standard_normal(m)
    corrupted = np.zeros(m, dtype=bool)
    corrupted[rng.choice(m, size=int(round(outlier_fraction * m)), replace=False)] = True
    y[corrupted] = outlier_scale * rng.standard_normal(int(corrupted.sum()))
    return MatrixSensing(A, y, X_star, factors, corrupted)


@dataclass(frozen=True)
class EqualityQP:
    """Quadratic program ``min x^T Q x / 2 + c^T x`` subject to ``A x = b``.

    Attributes
    ----------
    Q : numpy.ndarray
        Symmetric positive definite, shape ``(n, n)``.
    c : numpy.ndarray
        Linear term.
    A : numpy.ndarray
        Constraints, shape ``(p, n)``, full row rank.
    b : numpy.ndarray
        Right-hand side.
    x_star, lam_star : numpy.ndarray
        Solution and multipliers of the KKT system ``Q x + c + A^T lam = 0``, ``A x = b``.
    f_star : float
        Optimal value.
    """

    Q: np.ndarray
    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    x_star: np.ndarray
    lam_star: np.ndarray
    f_star: float

    def value(self, x: np.ndarray) -> float:
        """Return the objective at ``x``."""
        return float(0.5 * x @ self.Q @ x + self.c @ x)

    def kkt_residual(self, x: np.ndarray, lam: np.ndarray) -> float:
        """Return ``||(Q x + c + A^T lam, A x - b)||_2``."""
        stationarity = self.Q @ x + self.c + self.A.T @ lam
        feasibility = self.A @ x - self.b
        return float(np.sqrt(stationarity @ stationarity + feasibility @ feasibility))


def equality_qp(rng: np.random.Generator, n: int, p: int, condition_number: float = 10.0) -> EqualityQP:
    """Draw an equality-constrained QP and solve it through its KKT system.

    ``Q`` has eigenvalues spaced geometrically from 1 to ``condition_number`` and random
    eigenvectors; ``A`` is standard Gaussian (full row rank with probability 1).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n : int
        Variables.
    p : int
        Equality constraints, ``p < n``.
    condition_number : float
        Condition number of ``Q``.
    """
    if not 0 < p < n:
        raise ValueError(f"need 0 < p < n constraints, got p={p}, n={n}")
    basis = np.linalg.qr(rng.standard_normal((n, n)))[0]
    Q = (basis * np.geomspace(1.0, condition_number, n)) @ basis.T
    Q = 0.5 * (Q + Q.T)
    c = rng.standard_normal(n)
    A = rng.standard_normal((p, n))
    b = rng.standard_normal(p)
    kkt = np.block([[Q, A.T], [A, np.zeros((p, p))]])
    solution = linalg.solve(kkt, np.concatenate([-c, b]))
    x_star, lam_star = solution[:n], solution[n:]
    return EqualityQP(Q, c, A, b, x_star, lam_star, float(0.5 * x_star @ Q @ x_star + c @ x_star))


# --------------------------------------------------------------------------- figures


def plot_traces(
    ax: Any,
    traces: Sequence[Trace],
    metric: str,
    band: tuple[float, float] | None = (0.1, 0.9),
    xscale: str = "log",
    yscale: str = "log",
    guides: Sequence[tuple[float, str]] = (),
    fits: Mapping[str, RateFit] | None = None,
    ylabel: str | None = None,
    xlabel: str = "iteration $t$",
) -> Any:
    """Draw the median of each label's traces with a quantile band, in the book's style.

    Traces with the same label must share their iteration grid. Each label gets one colour of
    the current palette: a solid median line and a shaded band between the ``band`` quantiles
    over seeds. A guide ``(slope, text)`` is a grey dashed reference line ``C t^slope``
    (``C exp(slope t)`` on a linear x axis) anchored at the first median point of the first
    label; a fit is drawn dotted over its window.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes from :func:`reprobook.plotting.figure`.
    traces : sequence of Trace
        Traces to draw.
    metric : str
        Metric on the y axis.
    band : (float, float) or None
        Lower and upper quantile of the band; None draws no band.
    xscale, yscale : str
        Matplotlib axis scales.
    guides : sequence of (float, str)
        Reference rates and their legend text, such as ``(-0.5, "$t^{-1/2}$")``.
    fits : mapping of str to RateFit, optional
        Fitted rate per label, drawn over its window.
    ylabel, xlabel : str
        Axis labels; ``ylabel`` defaults to the metric name.

    Returns
    -------
    matplotlib.axes.Axes
    """
    groups: dict[str, list[Trace]] = {}
    for trace in traces:
        groups.setdefault(trace.label, []).append(trace)
    anchor: tuple[float, float] | None = None
    for colour_index, (label, group) in enumerate(groups.items()):
        grid = group[0].iteration
        if any(len(t.iteration) != len(grid) or np.any(t.iteration != grid) for t in group):
            raise ValueError(f"traces labelled '{label}' must share one iteration grid")
        values = np.stack([t[metric] for t in group])
        colour = f"C{colour_index}"
        median = np.nanmedian(values, axis=0)
        ax.plot(grid, median, color=colour, label=label or None)
        if band is not None and len(group) > 1:
            low, high = np.nanquantile(values, band, axis=0)
            ax.fill_between(grid, low, high, color=colour, alpha=0.2, linewidth=0)
        if fits and label in fits and fits[label].is_rate:
            fit = fits[label]
            ax.plot(fit.iteration, fit.predict(fit.iteration), color=colour, linestyle=":", linewidth=2)
        if anchor is None:
            start = np.flatnonzero(np.isfinite(median) & (median > 0) & (grid > 0))
            if len(start):
                anchor = (float(grid[start[0]]), float(median[start[0]]))
    for style, (slope, text) in zip(("--", "-.", (0, (5, 2, 1, 2))), guides, strict=False):
        if anchor is None:
            break
        x = np.asarray([t for t in groups[next(iter(groups))][0].iteration if t >= anchor[0]], dtype=float)
        ratio = (x / anchor[0]) ** slope if xscale == "log" else np.exp(slope * (x - anchor[0]))
        ax.plot(x, anchor[1] * ratio, color="grey", linestyle=style, linewidth=1, label=text)
    ax.set(xscale=xscale, yscale=yscale, xlabel=xlabel, ylabel=ylabel or metric)
    if any(groups) or guides:
        ax.legend()
    return ax
