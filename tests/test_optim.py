"""Rate fits, test problems and traces of the optimisation tools."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from reprobook import optim
from reprobook.plotting import figure
from reprobook.stats import evaluate_rule


def noisy_power_traces(slope: float, n_seeds: int = 8, noise: float = 0.1) -> list[optim.Trace]:
    """Return traces ``e_t = 3 t^slope`` times log-normal noise, one per seed."""
    t = np.unique(np.geomspace(1, 1e5, 200).astype(int))
    traces = []
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        error = 3.0 * t**slope * np.exp(noise * rng.standard_normal(len(t)))
        traces.append(optim.Trace(t, {"gap": error}, "sgd", seed))
    return traces


def test_rate_fit_recovers_sublinear_slope():
    traces = noisy_power_traces(-0.5)
    fits = [trace.fit("gap") for trace in traces]
    assert all(fit.is_rate for fit in fits)
    assert np.mean([fit.slope for fit in fits]) == pytest.approx(-0.5, abs=0.02)


def test_slope_rule_interval_contains_true_slope():
    columns = optim.rate_columns(noisy_power_traces(-0.5), "gap")
    rule = {"kind": "slope", "measure": "gap", "against": "iteration", "interval": [-0.55, -0.45]}
    result = evaluate_rule(rule, columns)
    assert result.verdict == "reproduced"
    assert result.interval[0] <= -0.5 <= result.interval[1]


def test_slope_rule_rejects_wrong_slope():
    columns = optim.rate_columns(noisy_power_traces(-1.0), "gap")
    rule = {"kind": "slope", "measure": "gap", "against": "iteration", "interval": [-0.6, -0.4]}
    assert evaluate_rule(rule, columns).verdict == "not-reproduced"


def test_linear_rate_recovered_by_semilog_rule():
    t = np.arange(0, 400)
    traces = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        error = 2.0 * np.exp(-0.05 * t) * np.exp(0.2 * rng.standard_normal(len(t)))
        error = np.maximum(error, 1e-14)  # a machine-precision plateau the window must leave out
        traces.append(optim.Trace(t, {"error": error}, "gd", seed))
    columns = optim.rate_columns(traces, "error", kind="linear")
    assert columns["error"].min() >= 1e3 * optim.EPS * 1.0
    rule = {"kind": "slope", "measure": "error", "against": "iteration", "interval": [-0.052, -0.048], "log": "y"}
    result = evaluate_rule(rule, columns)
    assert result.verdict == "reproduced"
    assert result.interval[0] <= -0.05 <= result.interval[1]


def test_flat_trace_is_not_a_rate():
    t = np.arange(1, 1000)
    rng = np.random.default_rng(0)
    flat = 0.3 * np.exp(0.2 * rng.standard_normal(len(t)))
    fit = optim.fit_rate(t, flat)
    assert not fit.is_rate
    assert np.isnan(fit.slope)
    assert fit.reason


def test_slowly_drifting_trace_is_not_a_rate():
    t = np.arange(1, 1000)
    fit = optim.fit_rate(t, 1.0 / np.log(t + 10.0), start_fraction=1.0)
    assert not fit.is_rate
    assert "factor" in fit.reason


def test_flat_traces_make_slope_rule_inconclusive():
    t = np.arange(1, 500)
    traces = [optim.Trace(t, {"gap": np.full(len(t), 0.5)}, "stalled", seed) for seed in range(5)]
    columns = optim.rate_columns(traces, "gap")
    rule = {"kind": "slope", "measure": "gap", "against": "iteration", "interval": [-0.6, -0.4]}
    assert evaluate_rule(rule, columns).verdict == "inconclusive"
    with pytest.raises(ValueError, match="not a rate"):
        optim.rate_columns(traces, "gap", flat="raise")


def test_flat_traces_whole_give_zero_slope():
    t = np.arange(1, 500)
    traces = [optim.Trace(t, {"gap": np.full(len(t), 0.5)}, "stalled", seed) for seed in range(5)]
    columns = optim.rate_columns(traces, "gap", flat="whole")
    rule = {"kind": "slope", "measure": "gap", "against": "iteration", "interval": [-0.6, -0.4]}
    result = evaluate_rule(rule, columns)
    assert result.verdict == "not-reproduced"
    assert result.value == pytest.approx(0.0, abs=1e-12)


def test_rate_window_skips_transient_and_floor():
    t = np.arange(1, 200, dtype=float)
    error = np.where(t < 20, 1.0, 1.0 / t)
    error[150:] = 1e-20
    window = optim.rate_window(t, error, floor=1e-10)
    assert t[window[0]] >= 20
    assert t[window[-1]] < 151


def test_rate_columns_need_distinct_seeds():
    t = np.arange(1, 10)
    traces = [optim.Trace(t, {"gap": 1.0 / t}, "a", 0), optim.Trace(t, {"gap": 1.0 / t}, "a", 0)]
    with pytest.raises(ValueError, match="distinct seed"):
        optim.rate_columns(traces, "gap")


def test_trace_validates_shapes():
    with pytest.raises(ValueError, match="strictly increasing"):
        optim.Trace(np.array([1, 1, 2]), {"gap": np.ones(3)})
    with pytest.raises(ValueError, match="shape"):
        optim.Trace(np.arange(3), {"gap": np.ones(4)})
    with pytest.raises(KeyError, match="recorded metrics"):
        optim.Trace(np.arange(3), {"gap": np.ones(3)})["loss"]


def test_least_squares_optimum_has_zero_gradient():
    problem = optim.least_squares(np.random.default_rng(1), n=200, d=10, noise_std=0.5, condition_number=50)
    assert np.linalg.norm(problem.gradient(problem.x_star)) < 1e-12
    assert problem.value(problem.x_star) == pytest.approx(problem.f_star)
    assert problem.value(problem.x_planted) > problem.f_star
    assert problem.L / problem.mu > 5


def test_least_squares_noiseless_recovers_planted():
    problem = optim.least_squares(np.random.default_rng(2), n=50, d=10)
    np.testing.assert_allclose(problem.x_star, problem.x_planted, atol=1e-10)
    assert problem.f_star < 1e-25


def test_logistic_non_separable_optimum_has_zero_gradient():
    problem = optim.logistic_regression(np.random.default_rng(3), n=500, d=5)
    assert not problem.separable
    assert problem.x_star is not None
    assert np.linalg.norm(problem.gradient(problem.x_star)) < 1e-12
    assert problem.value(problem.x_star) == pytest.approx(problem.f_star)
    assert problem.value(problem.x_star + 0.01) > problem.f_star


def test_logistic_separable_has_margin_and_zero_infimum():
    problem = optim.logistic_regression(np.random.default_rng(4), n=300, d=10, separable=True, margin=0.05)
    assert problem.x_star is None
    assert problem.f_star == 0.0
    margins = problem.y * (problem.A @ problem.direction)
    assert margins.min() >= 0.05
    values = [problem.value(scale * problem.direction) for scale in (10.0, 100.0, 1000.0)]
    assert values[0] > values[1] > values[2]
    assert values[2] < np.exp(-1000 * 0.05) * 1.01


def test_logistic_separable_with_ridge_has_minimiser():
    problem = optim.logistic_regression(np.random.default_rng(5), n=100, d=5, separable=True, ridge=1e-2)
    assert problem.x_star is not None
    assert np.linalg.norm(problem.gradient(problem.x_star)) < 1e-12


def test_matrix_sensing_truth_fits_clean_measurements():
    problem = optim.matrix_sensing(np.random.default_rng(6), d=8, rank=2, m=200, condition_number=2.0)
    assert problem.l1_loss(problem.X_star) < 1e-12
    np.testing.assert_allclose(problem.A, problem.A.transpose(0, 2, 1))
    np.testing.assert_allclose(np.linalg.eigvalsh(problem.X_star)[-2:], [0.5, 1.0], rtol=1e-5, atol=1e-12)


def test_matrix_sensing_measurements_are_isometric():
    problem = optim.matrix_sensing(np.random.default_rng(7), d=10, rank=1, m=4000)
    X = problem.X_star
    assert np.mean(problem.measure(X) ** 2) == pytest.approx(np.linalg.norm(X) ** 2, rel=0.1)


def test_matrix_sensing_outliers_are_marked():
    problem = optim.matrix_sensing(np.random.default_rng(8), d=6, rank=1, m=100, outlier_fraction=0.2)
    clean = problem.measure(problem.X_star)
    assert problem.corrupted.sum() == 20
    np.testing.assert_allclose(problem.y[~problem.corrupted], clean[~problem.corrupted])
    assert np.all(problem.y[problem.corrupted] != clean[problem.corrupted])


def test_matrix_sensing_gradient_descent_recovers_truth():
    problem = optim.matrix_sensing(np.random.default_rng(9), d=8, rank=1, m=160)
    rng = np.random.default_rng(10)
    U = 1e-3 * rng.standard_normal((8, 1))
    for _ in range(600):
        residual = problem.measure(U @ U.T) - problem.y
        U = U - 0.1 * 2 * problem.adjoint(residual) @ U / len(residual)
    assert problem.relative_error(U @ U.T) < 1e-8


def test_matrix_sensing_asymmetric_truth():
    problem = optim.matrix_sensing(np.random.default_rng(11), d=6, rank=2, m=100, symmetric=False)
    U, V = problem.factors
    np.testing.assert_allclose(problem.X_star, U @ V.T)
    assert np.linalg.matrix_rank(problem.X_star) == 2
    assert problem.l2_loss(problem.X_star) < 1e-25


def test_equality_qp_solution_satisfies_kkt():
    problem = optim.equality_qp(np.random.default_rng(12), n=20, p=5, condition_number=100)
    assert problem.kkt_residual(problem.x_star, problem.lam_star) < 1e-10
    np.testing.assert_allclose(problem.A @ problem.x_star, problem.b, atol=1e-10)
    assert problem.value(problem.x_star) == pytest.approx(problem.f_star)


def test_equality_qp_optimum_beats_feasible_points():
    problem = optim.equality_qp(np.random.default_rng(13), n=12, p=4)
    null_space = np.linalg.svd(problem.A)[2][4:].T
    rng = np.random.default_rng(14)
    for _ in range(20):
        x = problem.x_star + null_space @ rng.standard_normal(8)
        assert problem.value(x) > problem.f_star


def test_generators_are_seeded():
    first = optim.matrix_sensing(np.random.default_rng(15), d=5, rank=1, m=30, outlier_fraction=0.1)
    second = optim.matrix_sensing(np.random.default_rng(15), d=5, rank=1, m=30, outlier_fraction=0.1)
    np.testing.assert_array_equal(first.y, second.y)


def test_plot_traces_draws_median_band_and_guide():
    traces = noisy_power_traces(-0.5, n_seeds=4)
    fig, ax = figure("single")
    optim.plot_traces(ax, traces, "gap", guides=[(-0.5, "$t^{-1/2}$")], fits={"sgd": traces[0].fit("gap")})
    labels = [line.get_label() for line in ax.get_lines()]
    assert "sgd" in labels
    assert "$t^{-1/2}$" in labels
    assert len(ax.collections) == 1
    assert ax.get_xscale() == "log"


def test_plot_traces_rejects_mixed_grids():
    a = optim.Trace(np.arange(1, 5), {"gap": np.ones(4)}, "x", 0)
    b = optim.Trace(np.arange(1, 6), {"gap": np.ones(5)}, "x", 1)
    fig, ax = figure("single")
    with pytest.raises(ValueError, match="one iteration grid"):
        optim.plot_traces(ax, [a, b], "gap")
