"""Figures of a sweep: for each claim, where over the grid it held.

Two swept parameters give a heatmap (cell colour: verdict, text: value). One swept parameter
gives the value with its interval as a line over numeric values, or as a strip over other
values, with markers coloured by verdict. More than two swept parameters, or none, give a strip
over the grid points.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

from .claims import VERDICT_COLOURS
from .plotting import figure, use_theme

if TYPE_CHECKING:
    from .sweep import SweepResult


def plot_claim(result: SweepResult, claim: str, path: Path) -> Path:
    """Draw one claim's verdicts and values over the grid, save the figure as PNG and return ``path``."""
    use_theme()
    plan = result.plan
    cells = []
    for point, record in zip(plan.points, result.records, strict=True):
        found = next((c for c in record.claims if c["claim"] == claim), None)
        if found is not None:
            cells.append((point, found))
    quantity = next((c.get("quantity") for _, c in cells if c.get("quantity")), None) or "value"
    swept = [axis for axis in plan.axes if len(axis.values) > 1]
    held = sum(1 for _, c in cells if c["verdict"] == "reproduced")
    title = f"{plan.slug} {claim}: reproduced at {held} of {len(cells)} grid points ({plan.profile})"

    if len(swept) == 2:
        fig, ax = figure("square" if len(swept[1].values) > 3 else "single")
        _heatmap(ax, cells, swept[0], swept[1])
    elif len(swept) == 1 and all(_is_number(v) for v in swept[0].values):
        fig, ax = figure("single")
        _line(ax, cells, swept[0].name, quantity)
    else:
        fig, ax = figure("wide")
        _strip(ax, cells, [axis.name for axis in swept] or [axis.name for axis in plan.axes], quantity)
    present = [v for v in VERDICT_COLOURS if any(c["verdict"] == v for _, c in cells)]
    handles = [Line2D([], [], marker="s", linestyle="", color=VERDICT_COLOURS[v], label=v) for v in present]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    ax.set_title(title, fontsize="small")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _heatmap(ax: Any, cells: list[tuple[dict, dict]], x_axis: Any, y_axis: Any) -> None:
    """Colour each (x, y) cell by verdict and write the value in it."""
    colours = [[(1.0, 1.0, 1.0)] * len(x_axis.values) for _ in y_axis.values]
    labels: dict[tuple[int, int], str] = {}
    for point, claim in cells:
        column = _index(x_axis.values, point[x_axis.name])
        row = _index(y_axis.values, point[y_axis.name])
        colours[row][column] = to_rgb(VERDICT_COLOURS[claim["verdict"]])
        labels[(row, column)] = _short(claim.get("value"))
    ax.imshow(colours, origin="lower", aspect="auto")
    for row in range(len(y_axis.values) - 1):
        ax.axhline(row + 0.5, color="white", linewidth=2)
    for column in range(len(x_axis.values) - 1):
        ax.axvline(column + 0.5, color="white", linewidth=2)
    for (row, column), text in labels.items():
        ax.text(column, row, text, ha="center", va="center", color="white", fontsize="small")
    ax.set_xticks(range(len(x_axis.values)), [_label(v) for v in x_axis.values])
    ax.set_yticks(range(len(y_axis.values)), [_label(v) for v in y_axis.values])
    ax.set(xlabel=x_axis.name, ylabel=y_axis.name)
    ax.grid(False)


def _line(ax: Any, cells: list[tuple[dict, dict]], name: str, quantity: str) -> None:
    """Plot the value and its interval against a numeric parameter; points without a value sit on the x axis."""
    xs = [point[name] for point, _ in cells]
    values = [_number(c.get("value")) for _, c in cells]
    finite = [(x, v, c) for x, v, (_, c) in zip(xs, values, cells, strict=True) if v is not None]
    if finite:
        ax.plot([x for x, _, _ in finite], [v for _, v, _ in finite], color="0.6", zorder=1)
    for x, value, claim in zip(xs, values, (c for _, c in cells), strict=True):
        colour = VERDICT_COLOURS[claim["verdict"]]
        low, high = (_number(b) for b in (claim.get("interval") or [None, None]))
        if value is None:
            ax.scatter([x], [0.0], marker="x", color=colour, zorder=3, clip_on=False)
            continue
        if low is not None and high is not None:
            ax.errorbar([x], [value], yerr=[[value - low], [high - value]], color=colour, capsize=3, zorder=2)
        ax.scatter([x], [value], color=colour, zorder=3)
    positive = [x for x in xs if x > 0]
    if len(positive) == len(xs) and max(xs) / min(xs) >= 16:
        ax.set_xscale("log")
    ticks = sorted(set(xs))
    if len(ticks) <= 12:
        ax.set_xticks(ticks, [_label(x) for x in ticks])
        ax.minorticks_off()
    ax.set(xlabel=name, ylabel=quantity)


def _strip(ax: Any, cells: list[tuple[dict, dict]], names: list[str], quantity: str) -> None:
    """Plot one marker per grid point, labelled by its parameter values."""
    for position, (_, claim) in enumerate(cells):
        value = _number(claim.get("value"))
        colour = VERDICT_COLOURS[claim["verdict"]]
        low, high = (_number(b) for b in (claim.get("interval") or [None, None]))
        if value is None:
            ax.scatter([position], [0.0], marker="x", color=colour)
            continue
        if low is not None and high is not None:
            ax.errorbar([position], [value], yerr=[[value - low], [high - value]], color=colour, capsize=3)
        ax.scatter([position], [value], color=colour)
    labels = [", ".join(f"{n}={_label(point[n])}" for n in names) for point, _ in cells]
    ax.set_xticks(
        range(len(cells)), labels, rotation=45 if len(cells) > 4 else 0, ha="right" if len(cells) > 4 else "center"
    )
    ax.set(ylabel=quantity)


def _index(values: tuple, value: Any) -> int:
    return next(i for i, v in enumerate(values) if v == value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    if _is_number(value) and math.isfinite(value):
        return float(value)
    return None


def _short(value: Any) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:.3g}"


def _label(value: Any) -> str:
    return str(value)
