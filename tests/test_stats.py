"""Rules on constructed data: clear wins, clear losses, too few seeds, bad values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reprobook.stats import RuleError, evaluate_rule, validate_rule

SEEDS = np.arange(8)


def comparison(kind: str, arm, base, **extra):
    rule = {"kind": kind, "measure": "arm", "baseline": "base", **extra}
    return evaluate_rule(rule, {"seed": SEEDS[: len(arm)], "arm": arm, "base": base})


def test_less_clear_win():
    result = comparison("less", np.full(8, 1.0) + 0.01 * SEEDS, np.full(8, 2.0))
    assert result.verdict == "reproduced"
    assert result.value == pytest.approx(1.0 - 0.035, abs=1e-9)
    assert result.interval[0] > 0


def test_less_clear_loss():
    result = comparison("less", np.full(8, 3.0) + 0.01 * SEEDS, np.full(8, 2.0))
    assert result.verdict == "not-reproduced"


def test_greater_clear_win_and_loss():
    assert comparison("greater", np.full(6, 5.0) + 0.1 * SEEDS[:6], np.ones(6)).verdict == "reproduced"
    assert comparison("greater", np.zeros(6) + 0.1 * SEEDS[:6], np.ones(6)).verdict == "not-reproduced"


def test_less_noisy_tie_is_inconclusive():
    rng = np.random.default_rng(0)
    arm = rng.normal(0, 1, 8)
    base = arm + rng.normal(0, 1, 8)
    base[:4] = arm[:4] - 1  # half the seeds favour each side
    base[4:] = arm[4:] + 1
    assert comparison("less", arm, base).verdict == "inconclusive"


def test_less_margin_not_reached():
    result = comparison("less", np.full(8, 1.9) + 0.001 * SEEDS, np.full(8, 2.0), margin=0.5)
    assert result.verdict == "not-reproduced"


def test_less_three_seeds_cannot_reach_alpha():
    result = comparison("less", [1.0, 1.1, 1.2], [2.0, 2.1, 2.2])
    assert result.verdict == "inconclusive"
    assert "smallest possible p" in result.detail


def test_too_few_seeds_inconclusive():
    result = comparison("less", [1.0, 1.1], [2.0, 2.1])
    assert result.verdict == "inconclusive"
    assert "at least 3 seeds" in result.detail


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_never_reproduced(bad):
    arm = np.full(8, 1.0)
    arm[3] = bad
    result = comparison("less", arm, np.full(8, 2.0))
    assert result.verdict == "inconclusive"
    assert "NaN or infinite" in result.detail


def test_within_reproduced_and_not():
    rule = {"kind": "within", "measure": "acc", "rel_tol": 0.05}
    close = evaluate_rule(rule, {"seed": SEEDS, "acc": 0.90 + 0.001 * SEEDS}, paper_value=0.9)
    far = evaluate_rule(rule, {"seed": SEEDS, "acc": 0.70 + 0.001 * SEEDS}, paper_value=0.9)
    assert close.verdict == "reproduced"
    assert far.verdict == "not-reproduced"


def test_within_needs_a_target():
    with pytest.raises(RuleError, match="no target"):
        evaluate_rule({"kind": "within", "measure": "acc", "abs_tol": 0.1}, {"seed": SEEDS, "acc": SEEDS})


def slope_data(slope: float, noise: float = 0.01):
    rng = np.random.default_rng(1)
    widths = np.array([64, 256, 1024, 4096])
    seeds, xs, ys = [], [], []
    for seed in range(6):
        for w in widths:
            seeds.append(seed)
            xs.append(w)
            ys.append(w**slope * math.exp(noise * rng.standard_normal()))
    return {"seed": seeds, "width": xs, "std": ys}


def test_slope_recovers_known_exponent():
    rule = {"kind": "slope", "measure": "std", "against": "width", "interval": [-0.6, -0.4]}
    result = evaluate_rule(rule, slope_data(-0.5))
    assert result.verdict == "reproduced"
    assert result.value == pytest.approx(-0.5, abs=0.01)


def test_slope_outside_interval():
    rule = {"kind": "slope", "measure": "std", "against": "width", "interval": [-0.6, -0.4]}
    assert evaluate_rule(rule, slope_data(0.0)).verdict == "not-reproduced"


def test_slope_needs_two_points_per_seed():
    rule = {"kind": "slope", "measure": "y", "against": "x", "interval": [0, 1]}
    with pytest.raises(RuleError, match="two or more points"):
        evaluate_rule(rule, {"seed": [0, 1, 2], "x": [1, 1, 1], "y": [1, 2, 3]})


def test_monotone_increasing_and_flat():
    rule = {"kind": "monotone", "measure": "y", "against": "x", "direction": "increasing", "min_spearman": 0.8}
    seeds = np.repeat(np.arange(5), 4)
    xs = np.tile([1, 2, 3, 4], 5)
    rising = evaluate_rule(rule, {"seed": seeds, "x": xs, "y": xs + 0.01 * seeds})
    falling = evaluate_rule(rule, {"seed": seeds, "x": xs, "y": -xs + 0.01 * seeds})
    assert rising.verdict == "reproduced"
    assert falling.verdict == "not-reproduced"


def test_monotone_threshold_met_exactly_despite_rounding():
    # Means ranked 1, 3, 2, 4 give rho = 0.8, which scipy returns as 0.7999999999999999.
    rule = {"kind": "monotone", "measure": "y", "against": "x", "min_spearman": 0.8}
    seeds = np.repeat(np.arange(5), 4)
    xs = np.tile([8, 16, 32, 64], 5)
    ys = np.tile([1.0, 3.0, 2.0, 4.0], 5)
    result = evaluate_rule(rule, {"seed": seeds, "x": xs, "y": ys})
    assert result.interval[0] == pytest.approx(0.8)
    assert result.verdict == "reproduced"


def test_monotone_two_levels_inconclusive():
    rule = {"kind": "monotone", "measure": "y", "against": "x"}
    result = evaluate_rule(rule, {"seed": [0, 0, 1, 1, 2, 2], "x": [1, 2] * 3, "y": [1, 2] * 3})
    assert result.verdict == "inconclusive"


@pytest.mark.parametrize(
    ("statistic", "op", "bound", "expected"),
    [
        ("mean", "<", 0.2, "reproduced"),
        ("mean", ">", 0.2, "not-reproduced"),
        ("max", "<=", 0.108, "reproduced"),
        ("min", ">", 0.2, "not-reproduced"),
        ("fraction", ">=", 0.8, "reproduced"),
    ],
)
def test_threshold_statistics(statistic, op, bound, expected):
    values = 0.1 + 0.001 * SEEDS
    if statistic == "fraction":
        values = np.array([1, 1, 1, 1, 1, 1, 1, 0])
    rule = {"kind": "threshold", "measure": "err", "op": op, "bound": bound, "statistic": statistic}
    assert evaluate_rule(rule, {"seed": SEEDS, "err": values}).verdict == expected


def test_all_partial_when_secondary_fails():
    rule = {
        "kind": "all",
        "main": {"kind": "less", "measure": "arm", "baseline": "base"},
        "secondary": [{"kind": "threshold", "measure": "arm", "op": "<", "bound": 0.5}],
    }
    data = {"seed": SEEDS, "arm": 1.0 + 0.01 * SEEDS, "base": np.full(8, 2.0)}
    result = evaluate_rule(rule, data)
    assert result.verdict == "partial"
    assert [p.verdict for p in result.parts] == ["reproduced", "not-reproduced"]


def test_all_reproduced_and_main_failure():
    main = {"kind": "less", "measure": "arm", "baseline": "base"}
    secondary = [{"kind": "threshold", "measure": "arm", "op": "<", "bound": 5}]
    data = {"seed": SEEDS, "arm": 1.0 + 0.01 * SEEDS, "base": np.full(8, 2.0)}
    assert evaluate_rule({"kind": "all", "main": main, "secondary": secondary}, data).verdict == "reproduced"
    data["base"] = np.zeros(8)
    assert evaluate_rule({"kind": "all", "main": main, "secondary": secondary}, data).verdict == "not-reproduced"


def test_missing_measurement_named():
    with pytest.raises(RuleError, match="'base' is required"):
        evaluate_rule({"kind": "less", "measure": "arm", "baseline": "base"}, {"seed": SEEDS, "arm": SEEDS})


def test_unequal_columns_rejected():
    with pytest.raises(RuleError, match="differ in length"):
        evaluate_rule({"kind": "less", "measure": "a", "baseline": "b"}, {"a": [1, 2, 3], "b": [1, 2]})


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "bigger"}, "unknown rule kind"),
        ({"kind": "less", "measure": "a"}, "missing baseline"),
        ({"kind": "less", "measure": "a", "baseline": "b", "tolerance": 1}, "unknown keys tolerance"),
        ({"kind": "slope", "measure": "a", "against": "b", "interval": [1, 0]}, "low < high"),
        ({"kind": "threshold", "measure": "a", "op": "=", "bound": 1}, "'op' must be one of"),
        ({"kind": "within", "measure": "a"}, "rel_tol or abs_tol"),
    ],
)
def test_invalid_rules_rejected(rule, message):
    with pytest.raises(RuleError, match=message):
        validate_rule(rule)


def test_verdict_is_deterministic():
    rng = np.random.default_rng(5)
    data = {"seed": SEEDS, "arm": rng.normal(0, 1, 8), "base": rng.normal(0.5, 1, 8)}
    rule = {"kind": "less", "measure": "arm", "baseline": "base"}
    assert evaluate_rule(rule, data) == evaluate_rule(rule, data)


def test_untestable_is_static():
    result = evaluate_rule({"kind": "untestable", "reason": "needs ImageNet"}, {})
    assert result.verdict == "untestable"
    assert result.detail == "needs ImageNet"


def test_where_selects_rows():
    data = slope_data(-0.5)
    rule = {"kind": "threshold", "measure": "std", "op": "<", "bound": 0.05, "where": {"width": 4096}}
    result = evaluate_rule(rule, data)
    assert result.verdict == "reproduced"
    assert result.n_units == 6
    assert result.value == pytest.approx(4096**-0.5, rel=0.05)


def test_where_unknown_column_or_no_rows():
    rule = {"kind": "threshold", "measure": "std", "op": "<", "bound": 1, "where": {"depth": 3}}
    with pytest.raises(RuleError, match="'depth', which was not recorded"):
        evaluate_rule(rule, slope_data(-0.5))
    rule["where"] = {"width": 7}
    result = evaluate_rule(rule, slope_data(-0.5))
    assert result.verdict == "inconclusive"
    assert "no recorded row matches" in result.detail


def test_text_labels_in_where_and_unit():
    data = {
        "case": ["a", "a", "b", "b", "c", "c"],
        "arm": ["fixed", "norm"] * 3,
        "err": [1.0, 0.1, 1.0, 0.2, 1.0, 0.3],
    }
    rule = {
        "kind": "threshold",
        "measure": "err",
        "op": "<",
        "bound": 0.5,
        "statistic": "max",
        "unit": "case",
        "where": {"arm": "norm"},
    }
    result = evaluate_rule(rule, data)
    assert result.verdict == "reproduced"
    assert result.n_units == 3


def test_text_measure_rejected():
    rule = {"kind": "threshold", "measure": "arm", "op": "<", "bound": 1}
    with pytest.raises(RuleError, match="must be numeric"):
        evaluate_rule(rule, {"arm": ["x", "y", "z"]})
