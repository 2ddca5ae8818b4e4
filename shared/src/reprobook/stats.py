"""Pre-registered rules that turn measurements into verdicts.

A rule is a mapping read from a claim in ``paper.yaml``; :func:`evaluate_rule` applies it to
measurement columns recorded by a notebook. Every interval is a percentile bootstrap over the
resampling unit (``unit``, default ``seed``) with a fixed generator, so the same measurements
always give the same verdict.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

VERDICTS = ("reproduced", "partial", "not-reproduced", "inconclusive", "untestable", "error")
RULE_KINDS = ("less", "greater", "within", "slope", "monotone", "threshold", "all", "untestable")
SCALES = ("full", "reduced", "proxy", "untestable-offline")

_BOOT_SEED = 20240601
_COMMON_KEYS = {"kind", "unit", "min_seeds", "n_boot", "level", "note", "where"}
_KEYS = {
    "less": ({"measure", "baseline"}, {"margin", "alpha"}),
    "greater": ({"measure", "baseline"}, {"margin", "alpha"}),
    "within": ({"measure"}, {"target", "rel_tol", "abs_tol"}),
    "slope": ({"measure", "against", "interval"}, {"log"}),
    "monotone": ({"measure", "against"}, {"direction", "min_spearman"}),
    "threshold": ({"measure", "op", "bound"}, {"statistic"}),
    "all": ({"main"}, {"secondary"}),
    "untestable": ({"reason"}, set()),
}
_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


class RuleError(ValueError):
    """Invalid rule specification, or measurements that do not fit the rule."""


@dataclass(frozen=True)
class Evaluation:
    """Outcome of one rule on one set of measurements.

    Attributes
    ----------
    verdict : str
        One of :data:`VERDICTS`.
    value : float or None
        The rule's headline statistic (a mean difference, a slope, a mean, a correlation).
    interval : tuple of float, or None
        Bootstrap interval of ``value`` at the rule's ``level``, when the rule has one.
    detail : str
        One sentence on how the rule decided, for the claim card.
    n_units : int
        Number of resampling units (usually seeds) the rule saw.
    parts : list of Evaluation
        Sub-results of an ``all`` rule, main rule first.
    """

    verdict: str
    value: float | None = None
    interval: tuple[float, float] | None = None
    detail: str = ""
    n_units: int = 0
    parts: list[Evaluation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary of the evaluation."""
        return {
            "verdict": self.verdict,
            "value": _json_float(self.value),
            "interval": None if self.interval is None else [_json_float(v) for v in self.interval],
            "detail": self.detail,
            "n_units": self.n_units,
            "parts": [part.to_dict() for part in self.parts],
        }


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def validate_rule(rule: Any, where: str = "rule") -> None:
    """Check a rule specification and raise :class:`RuleError` naming what is wrong.

    Parameters
    ----------
    rule : mapping
        The rule as read from ``paper.yaml``.
    where : str
        Location used in error messages, such as ``"paper.yaml: C2.rule"``.
    """
    if not isinstance(rule, Mapping):
        raise RuleError(f"{where}: a rule must be a mapping with a 'kind', got {rule!r}")
    kind = rule.get("kind")
    if kind not in _KEYS:
        raise RuleError(f"{where}: unknown rule kind {kind!r}; valid kinds: {', '.join(RULE_KINDS)}")
    required, optional = _KEYS[kind]
    missing = sorted(required - set(rule))
    if missing:
        raise RuleError(f"{where}: rule '{kind}' is missing {', '.join(missing)}")
    unknown = sorted(set(rule) - required - optional - _COMMON_KEYS)
    if unknown:
        allowed = ", ".join(sorted(required | optional | _COMMON_KEYS))
        raise RuleError(f"{where}: rule '{kind}' has unknown keys {', '.join(unknown)}; allowed: {allowed}")
    if kind == "slope":
        interval = rule["interval"]
        if not (isinstance(interval, list | tuple) and len(interval) == 2 and interval[0] < interval[1]):
            raise RuleError(f"{where}: slope interval must be [low, high] with low < high, got {interval!r}")
        if rule.get("log", "both") not in ("both", "y", "none"):
            raise RuleError(f"{where}: slope 'log' must be one of both, y, none, got {rule['log']!r}")
    if kind == "monotone" and rule.get("direction", "increasing") not in ("increasing", "decreasing"):
        raise RuleError(f"{where}: monotone 'direction' must be increasing or decreasing")
    if kind == "threshold":
        if rule["op"] not in _OPS:
            raise RuleError(f"{where}: threshold 'op' must be one of {', '.join(_OPS)}, got {rule['op']!r}")
        if rule.get("statistic", "mean") not in ("mean", "median", "max", "min", "fraction"):
            raise RuleError(f"{where}: threshold 'statistic' must be mean, median, max, min or fraction")
    if kind == "within" and "rel_tol" not in rule and "abs_tol" not in rule:
        raise RuleError(f"{where}: rule 'within' needs rel_tol or abs_tol")
    if kind == "all":
        validate_rule(rule["main"], f"{where}.main")
        secondary = rule.get("secondary", [])
        if not isinstance(secondary, list):
            raise RuleError(f"{where}.secondary must be a list of rules")
        for i, sub in enumerate(secondary):
            validate_rule(sub, f"{where}.secondary[{i}]")
    level = rule.get("level", 0.95)
    if not 0 < level < 1:
        raise RuleError(f"{where}: level must lie in (0, 1), got {level!r}")


def rule_columns(rule: Mapping[str, Any]) -> list[str]:
    """Return the measurement columns a rule reads (without the unit column)."""
    if rule["kind"] == "all":
        columns = rule_columns(rule["main"])
        for sub in rule.get("secondary", []):
            columns += [c for c in rule_columns(sub) if c not in columns]
        return columns
    return [rule[key] for key in ("measure", "baseline", "against") if key in rule]


def describe_rule(rule: Mapping[str, Any]) -> str:
    """Return a one-line human description of a rule, for cards and the method page."""
    kind = rule["kind"]
    level = int(round(100 * rule.get("level", 0.95)))
    if kind in ("less", "greater"):
        margin = rule.get("margin", 0)
        side = "below" if kind == "less" else "above"
        text = f"{rule['measure']} {side} {rule['baseline']}, paired over seeds, p < {rule.get('alpha', 0.05)}"
        return text + (f", by more than {margin}" if margin else "")
    if kind == "within":
        target = rule.get("target", "the paper's value")
        tol = f"{100 * rule['rel_tol']:g}%" if "rel_tol" in rule else f"±{rule['abs_tol']:g}"
        return f"{level}% interval of mean {rule['measure']} within {tol} of {target}"
    if kind == "slope":
        axes = {"both": "log-log", "y": "semi-log", "none": "linear"}[rule.get("log", "both")]
        lo, hi = rule["interval"]
        return f"{level}% interval of the {axes} slope of {rule['measure']} against {rule['against']} in [{lo}, {hi}]"
    if kind == "monotone":
        direction = rule.get("direction", "increasing")
        return (
            f"{rule['measure']} {direction} in {rule['against']}: {level}% bootstrap lower bound of Spearman "
            f"rho >= {rule.get('min_spearman', 0.8)}"
        )
    if kind == "threshold":
        return f"{rule.get('statistic', 'mean')} of {rule['measure']} {rule['op']} {rule['bound']}"
    if kind == "all":
        parts = [describe_rule(rule["main"])] + [describe_rule(s) for s in rule.get("secondary", [])]
        return "main: " + parts[0] + ("; secondary: " + "; ".join(parts[1:]) if parts[1:] else "")
    return f"untestable: {rule['reason']}"


def describe_quantity(rule: Mapping[str, Any]) -> str:
    """Return what a rule's headline value measures, for the label on a claim card."""
    kind = rule["kind"]
    if kind == "less":
        return f"mean of {rule['baseline']} minus {rule['measure']}"
    if kind == "greater":
        return f"mean of {rule['measure']} minus {rule['baseline']}"
    if kind == "within":
        return f"mean {rule['measure']}"
    if kind == "slope":
        return f"slope of {rule['measure']} against {rule['against']}"
    if kind == "monotone":
        return f"Spearman rho of {rule['measure']} against {rule['against']}"
    if kind == "threshold":
        return f"{rule.get('statistic', 'mean')} of {rule['measure']}"
    if kind == "all":
        return describe_quantity(rule["main"])
    return ""


def evaluate_rule(
    rule: Mapping[str, Any],
    data: Mapping[str, Any],
    paper_value: float | None = None,
) -> Evaluation:
    """Apply a rule to measurement columns and return the verdict.

    Parameters
    ----------
    rule : mapping
        A validated rule (see :func:`validate_rule`).
    data : mapping of str to array-like
        Measurement columns of equal length, one row per unit or per unit and swept value.
    paper_value : float, optional
        The paper's number; the default target of a ``within`` rule.

    Returns
    -------
    Evaluation

    Raises
    ------
    RuleError
        If a column the rule reads is missing or the columns differ in length.
    """
    validate_rule(rule)
    kind = rule["kind"]
    if kind == "untestable":
        return Evaluation("untestable", detail=str(rule["reason"]))
    if kind == "all":
        return _evaluate_all(rule, data, paper_value)
    if "where" in rule:
        selected = _select_rows(rule["where"], data)
        if selected is None:
            return Evaluation(
                "inconclusive",
                detail=f"no recorded row matches where={dict(rule['where'])}: this run did not measure that case.",
            )
        data = selected

    columns = _columns(rule, data)
    unit_name = rule.get("unit", "seed")
    units = np.asarray(data[unit_name]) if unit_name in data else np.arange(len(next(iter(columns.values()))))
    n_units = len(np.unique(units))
    for name, values in columns.items():
        bad = int(np.sum(~np.isfinite(values)))
        if bad:
            return Evaluation(
                "inconclusive",
                detail=f"{bad} of {len(values)} values of '{name}' are NaN or infinite, so the rule cannot decide.",
                n_units=n_units,
            )
    min_units = int(rule.get("min_seeds", 3))
    if n_units < min_units:
        return Evaluation(
            "inconclusive",
            detail=f"The rule needs at least {min_units} seeds and the run had {n_units}.",
            n_units=n_units,
        )
    evaluate = {
        "less": _evaluate_comparison,
        "greater": _evaluate_comparison,
        "within": _evaluate_within,
        "slope": _evaluate_slope,
        "monotone": _evaluate_monotone,
        "threshold": _evaluate_threshold,
    }[kind]
    return evaluate(rule, columns, units, paper_value)


def _select_rows(where: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any] | None:
    """Keep the rows whose columns equal the values in ``where`` (e.g. ``{width: 4096}``); None if none match."""
    if not isinstance(where, Mapping) or not where:
        raise RuleError(f"'where' must map column names to values, got {where!r}")
    mask = None
    for name, value in where.items():
        if name not in data:
            raise RuleError(
                f"'where' names column '{name}', which was not recorded; recorded: {', '.join(sorted(data))}"
            )
        column = np.asarray(data[name]).ravel()
        selected = column == value
        mask = selected if mask is None else mask & selected
    if not mask.any():
        return None
    length = len(mask)
    return {k: np.asarray(v).ravel()[mask] if len(np.asarray(v).ravel()) == length else v for k, v in data.items()}


def _columns(rule: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    names = rule_columns(rule)
    missing = [n for n in names if n not in data]
    if missing:
        raise RuleError(
            f"measurement '{missing[0]}' is required by the rule but was not recorded; "
            f"recorded columns: {', '.join(sorted(data)) or 'none'}"
        )
    columns = {}
    for name in names:
        try:
            columns[name] = np.asarray(data[name], dtype=float).ravel()
        except ValueError:
            raise RuleError(
                f"measurement '{name}' must be numeric for this rule; text labels fit 'unit' or 'where'"
            ) from None
    lengths = {len(v) for v in columns.values()}
    unit_name = rule.get("unit", "seed")
    if unit_name in data:
        lengths.add(len(np.asarray(data[unit_name]).ravel()))
    if len(lengths) != 1:
        raise RuleError(f"recorded columns differ in length ({sorted(lengths)}); record one row per observation")
    if lengths == {0}:
        raise RuleError("recorded columns are empty")
    return columns


def _unit_means(values: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Average the rows of each unit, in the order of first appearance."""
    _, first, inverse = np.unique(units, return_index=True, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse)
    order = np.argsort(first)
    return (sums / counts)[order]


def _bootstrap(samples: np.ndarray, statistic: Any, n_boot: int, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the first axis of ``samples``."""
    rng = np.random.default_rng(_BOOT_SEED)
    n = len(samples)
    draws = rng.integers(0, n, size=(n_boot, n))
    values = np.array([statistic(samples[idx]) for idx in draws], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (math.nan, math.nan)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _sign_flip_pvalue(diffs: np.ndarray) -> float:
    """One-sided p-value of mean(diffs) > 0 by an exact (n <= 16) or sampled sign-flip test."""
    n = len(diffs)
    observed = diffs.mean()
    if n <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        rng = np.random.default_rng(_BOOT_SEED)
        signs = rng.choice((1.0, -1.0), size=(20000, n))
    flipped = (signs * diffs).mean(axis=1)
    return float(np.mean(flipped >= observed - 1e-12 * max(1.0, abs(observed))))


def _settings(rule: Mapping[str, Any]) -> tuple[int, float]:
    return int(rule.get("n_boot", 2000)), float(rule.get("level", 0.95))


def _evaluate_comparison(rule, columns, units, paper_value) -> Evaluation:
    n_boot, level = _settings(rule)
    arm = _unit_means(columns[rule["measure"]], units)
    base = _unit_means(columns[rule["baseline"]], units)
    diffs = base - arm if rule["kind"] == "less" else arm - base
    margin = float(rule.get("margin", 0.0))
    alpha = float(rule.get("alpha", 0.05))
    mean = float(diffs.mean())
    low, high = _bootstrap(diffs, np.mean, n_boot, level)
    p_value = _sign_flip_pvalue(diffs - margin)
    word = "below" if rule["kind"] == "less" else "above"
    text = (
        f"{rule['measure']} mean {arm.mean():.4g} vs {rule['baseline']} mean {base.mean():.4g}: "
        f"{rule['measure']} is {word} by {mean:.4g} [{low:.4g}, {high:.4g}] on average, "
        f"sign-flip p = {p_value:.3g} over {len(diffs)} seeds"
    )
    if p_value < alpha and mean > margin:
        verdict = "reproduced"
    elif high <= margin:
        verdict = "not-reproduced"
    else:
        verdict = "inconclusive"
        smallest = 2.0 ** -len(diffs) if len(diffs) <= 16 else 0.0
        if smallest >= alpha:
            text += f" (with {len(diffs)} seeds the smallest possible p is {smallest:.3g})"
    return Evaluation(verdict, mean, (low, high), text + ".", len(diffs))


def _evaluate_within(rule, columns, units, paper_value) -> Evaluation:
    n_boot, level = _settings(rule)
    target = rule.get("target", paper_value)
    if target is None:
        raise RuleError("rule 'within' has no target and the claim has no paper_value")
    target = float(target)
    tol = float(rule["rel_tol"]) * abs(target) if "rel_tol" in rule else float(rule["abs_tol"])
    values = _unit_means(columns[rule["measure"]], units)
    mean = float(values.mean())
    low, high = _bootstrap(values, np.mean, n_boot, level)
    lo_ok, hi_ok = target - tol, target + tol
    text = (
        f"mean {rule['measure']} {mean:.4g} [{low:.4g}, {high:.4g}] over {len(values)} seeds; "
        f"accepted range {lo_ok:.4g} to {hi_ok:.4g} around the target {target:.4g}."
    )
    if lo_ok <= low and high <= hi_ok:
        verdict = "reproduced"
    elif high < lo_ok or low > hi_ok:
        verdict = "not-reproduced"
    else:
        verdict = "inconclusive"
    return Evaluation(verdict, mean, (low, high), text, len(values))


def _evaluate_slope(rule, columns, units, paper_value) -> Evaluation:
    n_boot, level = _settings(rule)
    y = columns[rule["measure"]]
    x = columns[rule["against"]]
    log = rule.get("log", "both")
    if log in ("both", "y") and np.any(y <= 0):
        return Evaluation(
            "inconclusive",
            detail=f"'{rule['measure']}' has values <= 0, so its logarithm and the slope are undefined.",
            n_units=len(np.unique(units)),
        )
    if log == "both" and np.any(x <= 0):
        raise RuleError(f"'{rule['against']}' must be positive for a log-log slope")
    fy = np.log(y) if log in ("both", "y") else y
    fx = np.log(x) if log == "both" else x
    slopes = []
    for unit in _ordered_unique(units):
        mask = units == unit
        if len(np.unique(fx[mask])) < 2:
            raise RuleError(
                f"seed {unit!r} has fewer than two distinct values of '{rule['against']}'; "
                "a slope needs each seed measured at two or more points"
            )
        slopes.append(np.polyfit(fx[mask], fy[mask], 1)[0])
    slopes_arr = np.asarray(slopes)
    mean = float(slopes_arr.mean())
    low, high = _bootstrap(slopes_arr, np.mean, n_boot, level)
    lo_ok, hi_ok = (float(v) for v in rule["interval"])
    text = (
        f"mean fitted slope {mean:.3g} [{low:.3g}, {high:.3g}] over {len(slopes_arr)} seeds; "
        f"pre-registered interval [{lo_ok:g}, {hi_ok:g}]."
    )
    if lo_ok <= low and high <= hi_ok:
        verdict = "reproduced"
    elif high < lo_ok or low > hi_ok:
        verdict = "not-reproduced"
    else:
        verdict = "inconclusive"
    return Evaluation(verdict, mean, (low, high), text, len(slopes_arr))


def _ordered_unique(values: np.ndarray) -> list[Any]:
    _, first = np.unique(values, return_index=True)
    return [values[i] for i in sorted(first)]


SPEARMAN_TOLERANCE = 1e-9


def _evaluate_monotone(rule, columns, units, paper_value) -> Evaluation:
    n_boot, level = _settings(rule)
    y = columns[rule["measure"]]
    x = columns[rule["against"]]
    levels = np.unique(x)
    n_units = len(np.unique(units))
    if len(levels) < 3:
        return Evaluation(
            "inconclusive",
            detail=f"a trend needs at least 3 values of '{rule['against']}', the run had {len(levels)}.",
            n_units=n_units,
        )
    # Table of unit x level means; a unit that skipped a level contributes NaN there.
    unit_ids = _ordered_unique(units)
    table = np.full((len(unit_ids), len(levels)), np.nan)
    for i, unit in enumerate(unit_ids):
        for j, lev in enumerate(levels):
            mask = (units == unit) & (x == lev)
            if mask.any():
                table[i, j] = y[mask].mean()
    sign = 1.0 if rule.get("direction", "increasing") == "increasing" else -1.0

    def signed_spearman(rows: np.ndarray) -> float:
        means = np.nanmean(rows, axis=0)
        if np.any(np.isnan(means)) or np.ptp(means) == 0:
            return 0.0
        return sign * float(sps.spearmanr(levels, means).statistic)

    rho = signed_spearman(table)
    low, high = _bootstrap(table, signed_spearman, n_boot, level)
    threshold = float(rule.get("min_spearman", 0.8))
    text = (
        f"signed Spearman rho of the mean {rule['measure']} against {rule['against']} = {rho:.3g} "
        f"[{low:.3g}, {high:.3g}] over {n_units} seeds and {len(levels)} levels; threshold {threshold:g}."
    )
    # Spearman's rho of a few levels is a ratio of small integers; the tolerance keeps a rho of
    # exactly the threshold (e.g. 0.8 computed as 0.7999999999999999) from missing it by rounding.
    if low >= threshold - SPEARMAN_TOLERANCE:
        verdict = "reproduced"
    elif high < threshold - SPEARMAN_TOLERANCE:
        verdict = "not-reproduced"
    else:
        verdict = "inconclusive"
    return Evaluation(verdict, rho, (low, high), text, n_units)


def _evaluate_threshold(rule, columns, units, paper_value) -> Evaluation:
    n_boot, level = _settings(rule)
    values = _unit_means(columns[rule["measure"]], units)
    statistic = rule.get("statistic", "mean")
    op = _OPS[rule["op"]]
    bound = float(rule["bound"])
    n = len(values)
    if statistic in ("mean", "median"):
        func = np.mean if statistic == "mean" else np.median
        value = float(func(values))
        low, high = _bootstrap(values, func, n_boot, level)
        text = (
            f"{statistic} {rule['measure']} {value:.4g} [{low:.4g}, {high:.4g}] over {n} seeds; "
            f"claimed {rule['op']} {bound:g}."
        )
        if op(low, bound) and op(high, bound):
            verdict = "reproduced"
        elif not op(low, bound) and not op(high, bound):
            verdict = "not-reproduced"
        else:
            verdict = "inconclusive"
        return Evaluation(verdict, value, (low, high), text, n)
    if statistic == "fraction":
        value = float(np.mean(values > 0.5))
    else:
        value = float(values.max() if statistic == "max" else values.min())
    verdict = "reproduced" if op(value, bound) else "not-reproduced"
    text = f"{statistic} of {rule['measure']} over {n} seeds is {value:.4g}; claimed {rule['op']} {bound:g}."
    return Evaluation(verdict, value, None, text, n)


def _evaluate_all(rule, data, paper_value) -> Evaluation:
    main = evaluate_rule(rule["main"], data, paper_value)
    secondary = [evaluate_rule(sub, data, paper_value) for sub in rule.get("secondary", [])]
    failing = [s for s in secondary if s.verdict != "reproduced"]
    if main.verdict != "reproduced":
        verdict = main.verdict
    elif failing:
        verdict = "partial"
    else:
        verdict = "reproduced"
    detail = "Main: " + main.detail
    for i, sub in enumerate(secondary, start=1):
        detail += f" Secondary {i} ({sub.verdict}): {sub.detail}"
    return Evaluation(verdict, main.value, main.interval, detail, main.n_units, [main, *secondary])
