"""Sweep grids: parsing and validation of -p specs, the report and figures, and a sweep through the CLI."""

from __future__ import annotations

import csv
import json
import time

import pytest

from reprobook.params import parse_parameters
from reprobook.runner import RunRecord
from reprobook.scaffold import scaffold
from reprobook.sweep import Axis, SweepError, SweepPlan, SweepResult, parse_grid, split_values, write_report

from .conftest import cli, copy_project

PARAMS = parse_parameters(
    "seed: int = 0  # base seed; range [0, ]\n"
    "width: int = 64  # hidden width; range [8, 4096]\n"
    "lr: float = 0.1  # step size; range [0, ]\n"
    "method: str = 'gd'  # optimiser; one of {gd, momentum}\n"
    "widths: list[int] = [64, 256]  # widths of the kernel test\n"
    "verbose: bool = False  # print progress"
)


def values(specs: list[str], max_points: int = 100) -> dict[str, tuple]:
    return {axis.name: axis.values for axis in parse_grid(specs, PARAMS, max_points)}


def test_range_excludes_stop():
    assert values(["seed=0:4"]) == {"seed": (0, 1, 2, 3)}


def test_range_with_step_and_negative_step():
    assert values(["width=8:40:16"]) == {"width": (8, 24)}
    assert values(["seed=3:0:-1"]) == {"seed": (3, 2, 1)}


def test_value_lists_convert_by_type():
    assert values(["lr=0.1,1e-2", "method=gd,momentum", "verbose=true,no"]) == {
        "lr": (0.1, 0.01),
        "method": ("gd", "momentum"),
        "verbose": (True, False),
    }


def test_list_values_keep_inner_commas():
    assert split_values("[64, 256],[1024]") == ["[64, 256]", "[1024]"]
    assert values(["widths=[64, 256],[1024]"]) == {"widths": ([64, 256], [1024])}


def test_single_value_is_one_point_axis():
    [axis] = parse_grid(["seed=7"], PARAMS)
    assert axis == Axis("seed", ("7",), (7,))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("seed=4:0", "the range is empty"),
        ("seed=0:4:0", "the step of a range must not be 0"),
        ("lr=0:2", "ranges START:STOP[:STEP] take int parameters"),
        ("seed=-1:2", "-1 is below the allowed range [0, ]"),
        ("width=8,abc", "value 'abc' is not a valid int"),
        ("method=gd,adam", "'adam' is not one of {gd, momentum}"),
        ("seed=1,01", "-p seed lists 1 more than once"),
        ("seed=1,,2", "empty value in the list"),
        ("sed=0:2", "unknown parameter 'sed'. Did you mean 'seed'?"),
        ("seed", "is not of the form NAME=V1,V2,..."),
    ],
)
def test_invalid_spec_is_rejected(spec, message):
    with pytest.raises(SweepError) as info:
        parse_grid([spec], PARAMS)
    assert message in str(info.value)


def test_parameter_given_twice_is_rejected():
    with pytest.raises(SweepError, match="-p seed is given twice"):
        parse_grid(["seed=0:2", "seed=5"], PARAMS)


def test_max_points_names_grid_size():
    with pytest.raises(SweepError) as info:
        parse_grid(["seed=0:10", "width=8,16,32"], PARAMS, max_points=20)
    assert "the grid has 30 points (10 seed x 3 width), more than --max-points 20" in str(info.value)


def test_max_points_checked_before_values_convert():
    start = time.monotonic()
    with pytest.raises(SweepError, match="the grid has 1000000000 points"):
        parse_grid(["seed=0:1000000000"], PARAMS)
    assert time.monotonic() - start < 1.0


def claim(name: str, verdict: str, value: float | None) -> dict:
    interval = [value - 0.1, value + 0.1] if value is not None else [None, None]
    return {"claim": name, "verdict": verdict, "value": value, "interval": interval, "n_seeds": 3, "quantity": "gap"}


def fake_result(axes: list[Axis]) -> SweepResult:
    """A sweep result built from records, without running notebooks."""
    import itertools

    points, records = [], []
    for index, combination in enumerate(itertools.product(*(axis.values for axis in axes))):
        point = {axis.name: value for axis, value in zip(axes, combination, strict=True)}
        verdict = "reproduced" if index % 2 == 0 else "not-reproduced"
        claims = [claim("C1", verdict, float(index)), claim("C2", "error", None)]
        status = "executed" if index != 1 else "died"
        records.append(RunRecord("toy", "ci", status, 1.5, point, claims, error=None if index != 1 else "lost"))
        points.append(point)
    plan = SweepPlan("toy", "ci", axes, points, prepared=[])
    return SweepResult(plan, records, 3.0, "LocalExecutor", 2)


@pytest.mark.parametrize(
    "axes",
    [
        [Axis("seed", ("0", "1", "2"), (0, 1, 2))],
        [Axis("seed", ("0", "1"), (0, 1)), Axis("width", ("64", "256"), (64, 256))],
        [Axis("method", ("gd", "momentum"), ("gd", "momentum"))],
        [Axis("seed", ("0", "1"), (0, 1)), Axis("lr", ("0.1", "1"), (0.1, 1.0)), Axis("width", ("8", "16"), (8, 16))],
    ],
    ids=["line", "heatmap", "categorical", "three-axes"],
)
def test_report_rows_and_figures(tmp_path, axes):
    result = fake_result(axes)
    paths = write_report(result, tmp_path)
    n_points = len(result.records)
    names = [axis.name for axis in axes]
    assert [p.name for p in paths] == ["toy-sweep.csv", "toy-sweep.json", "toy-sweep-C1.png", "toy-sweep-C2.png"]
    for figure in paths[2:]:
        assert figure.stat().st_size > 1000
    with paths[0].open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * n_points
    assert list(rows[0])[: 1 + len(names)] == ["point", *names]
    assert rows[2]["status"] == "died"
    assert rows[2]["error"] == "lost"
    report = json.loads(paths[1].read_text())
    assert report["points"] == n_points
    assert report["summary"]["C1"]["reproduced"] == (n_points + 1) // 2
    assert report["summary"]["C2"]["verdicts"] == {"error": n_points}
    assert report["rows"][0]["value"] == 0.0
    assert report["rows"][1]["value"] is None


@pytest.mark.slow
def test_sweep_cli_caches_each_point(tmp_path):
    root = copy_project(tmp_path / "project", papers=[])
    scaffold(root, "toy-paper", topic="testing")
    sweep = ["sweep", "toy-paper", "-p", "seed=0:2", "--profile", "ci", "--jobs", "2"]
    first = cli(root, *sweep, "--output-dir", str(tmp_path / "first"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "C1: reproduced at 2 of 2 grid points" in first.stdout
    second = cli(root, *sweep, "--output-dir", str(tmp_path / "second"))
    assert second.returncode == 0, second.stderr
    first_rows = json.loads((tmp_path / "first" / "toy-paper-sweep.json").read_text())["rows"]
    second_rows = json.loads((tmp_path / "second" / "toy-paper-sweep.json").read_text())["rows"]
    assert [r["status"] for r in first_rows] == ["executed", "executed"]
    assert [r["status"] for r in second_rows] == ["cached", "cached"]
    for before, after in zip(first_rows, second_rows, strict=True):
        assert after["value"] == before["value"]
        assert after["verdict"] == before["verdict"]


def test_sweep_cli_rejects_invalid_grid_before_running(tmp_path):
    root = copy_project(tmp_path / "project", papers=[])
    scaffold(root, "toy-paper", topic="testing")
    result = cli(root, "sweep", "toy-paper", "-p", "seed=0:3", "-p", "dim=1,10", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "parameter 'dim'" in result.stderr
    assert "below the allowed range [2, ]" in result.stderr
    assert not (tmp_path / "out").exists()
    assert not (root / ".reprobook" / "cache").exists()
    too_big = cli(root, "sweep", "toy-paper", "-p", "seed=0:50", "-p", "dim=2:10", "--max-points", "64")
    assert too_big.returncode == 2
    assert "the grid has 400 points (50 seed x 8 dim), more than --max-points 64" in too_big.stderr
