"""Parameters cell parsing, profile checks and command-line value coercion."""

from __future__ import annotations

import math

import nbformat
import pytest

from reprobook.params import (
    ParameterError,
    find_parameters_cell,
    parse_assignments,
    parse_parameters,
    parse_text_value,
    resolve_parameters,
)

CELL = """\
seed: int = 0  # base seed; range [0, ]
lr: float = 0.1  # learning rate; range [0, 10]
widths: list[int] = [64, 256]  # hidden widths
name: str = "007"  # run label
flag: bool = False  # use the variant
max_iter: int | None = None  # iteration cap, None for no cap
label: str | None = None  # optional label
method: str = "ppg"  # estimator; one of {ppg, paris}
options: dict = {}  # extra settings
"""


@pytest.fixture
def params():
    return parse_parameters(CELL)


def test_declarations_parsed(params):
    assert list(params) == ["seed", "lr", "widths", "name", "flag", "max_iter", "label", "method", "options"]
    assert params["seed"].help == "base seed; range [0, ]"
    assert params["seed"].low == 0
    assert params["lr"].high == 10
    assert params["widths"].item == "int"
    assert params["max_iter"].optional
    assert params["method"].choices == ("ppg", "paris")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("seed", "3", 3),
        ("lr", "1e-3", 1e-3),
        ("lr", "2", 2.0),
        ("widths", "[1, 2, 3]", [1, 2, 3]),
        ("name", "007", "007"),
        ("name", "None", "None"),
        ("name", 'it\'s "quoted"\nnext', 'it\'s "quoted"\nnext'),
        ("flag", "true", True),
        ("flag", "no", False),
        ("max_iter", "None", None),
        ("max_iter", "12", 12),
        ("label", "~", None),
        ("label", "None", "None"),
        ("options", "{a: 1}", {"a": 1}),
    ],
)
def test_text_values_follow_annotation(params, name, text, expected):
    assert parse_text_value(params[name], text) == expected


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_non_finite_outside_declared_range(params, text):
    with pytest.raises(ParameterError, match="range"):
        parse_text_value(params["lr"], text)


def test_unbounded_float_takes_nan_and_infinity():
    params = parse_parameters("tol: float = 1.0  # tolerance\n")
    assert math.isnan(parse_text_value(params["tol"], "nan"))
    assert parse_text_value(params["tol"], "inf") == math.inf
    assert parse_text_value(params["tol"], "-inf") == -math.inf


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("seed", "abc", "value 'abc' is not a valid int"),
        ("seed", "1.5", "not a valid int"),
        ("seed", "-1", "below the allowed range"),
        ("lr", "11", "above the allowed range"),
        ("widths", "[1, 'a']", "element 'a'"),
        ("widths", "{a: 1}", "expected list"),
        ("flag", "maybe", "not a valid bool"),
        ("seed", "None", "not a valid int"),
        ("method", "smc", "is not one of"),
    ],
)
def test_bad_values_named(params, name, text, message):
    with pytest.raises(ParameterError, match=message):
        parse_text_value(params[name], text)


def test_unknown_name_lists_parameters_and_suggests(params):
    with pytest.raises(ParameterError) as info:
        resolve_parameters(params, {}, {"sed": "1"}, "demo")
    text = str(info.value)
    assert "unknown parameter 'sed'" in text
    assert "Did you mean 'seed'?" in text
    assert "widths: list[int] = [64, 256]" in text


def test_resolution_order(params):
    resolved = resolve_parameters(params, {"seed": 5, "lr": 0.5}, {"lr": "0.2"}, "demo")
    assert resolved["seed"] == 5
    assert resolved["lr"] == 0.2
    assert resolved["widths"] == [64, 256]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("seed = 0  # no annotation\n", "has no type annotation"),
        ("seed: int = 0\nseed: int = 1\n", "declared twice"),
        ("x: set = set()\n", "unsupported annotation"),
        ("x: int = 'a'  # wrong default\n", "expected int"),
        ("x: int = foo()\n", "must be a literal"),
        ("print('hi')\n", "not an annotated assignment"),
    ],
)
def test_bad_parameter_cells(source, message):
    with pytest.raises(ParameterError, match=message):
        parse_parameters(source)


def test_parameters_cell_missing_or_twice():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x: int = 1")]
    with pytest.raises(ParameterError, match="no code cell is tagged"):
        find_parameters_cell(nb, "demo.ipynb")
    for cell in nb.cells:
        cell.metadata["tags"] = ["parameters"]
    nb.cells.append(nbformat.v4.new_code_cell("y: int = 2", metadata={"tags": ["parameters"]}))
    with pytest.raises(ParameterError, match="2 cells are tagged"):
        find_parameters_cell(nb, "demo.ipynb")


def test_assignments_split():
    assert parse_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_assignments(["novalue"])
    with pytest.raises(ParameterError, match="given twice"):
        parse_assignments(["a=1", "a=2"])
