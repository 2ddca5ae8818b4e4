"""The notebook's ``parameters`` cell: declarations, profiles and value coercion.

Each line of the cell is a type-annotated assignment with a comment::

    n_particles: int = 64  # particles per SMC sweep; range [1, ]
    method: str = "ppg"  # estimator; one of {ppg, paris}

Values given on the command line arrive as text and are converted by the annotation, never
evaluated as code: ``int`` and ``float`` by Python's literal rules (``nan``, ``inf`` included for
floats), ``bool`` from true/false/yes/no/1/0, ``str`` verbatim (``"007"`` and ``"None"`` stay
text), ``list`` and ``dict`` as YAML, and ``None`` from ``None``/``null``/``~`` where the
annotation allows it (for ``str | None`` only ``null`` and ``~``, so the text "None" stays text).
"""

from __future__ import annotations

import ast
import difflib
import io
import math
import re
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .yamlfile import load_yaml

PROFILES = ("ci", "book", "large")
_BASE_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}
_NONE_TEXT = {"none", "null", "~"}
_TRUE_TEXT = {"true", "yes", "1"}
_FALSE_TEXT = {"false", "no", "0"}
_RANGE = re.compile(r"range\s*\[\s*([^,\]]*)\s*,\s*([^\]]*)\]")
_CHOICES = re.compile(r"one of\s*\{([^}]*)\}")


class ParameterError(ValueError):
    """Invalid parameters cell, profile or parameter value."""


@dataclass(frozen=True)
class Parameter:
    """One declaration of a notebook's parameters cell."""

    name: str
    annotation: str
    base: str
    item: str | None
    optional: bool
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        """Return ``name: type = default  # help`` as one line."""
        return f"{self.name}: {self.annotation} = {self.default!r}  # {self.help}"


def find_parameters_cell(nb: Any, path: Path | str = "notebook") -> int:
    """Return the index of the single code cell tagged ``parameters``.

    Raises
    ------
    ParameterError
        If the notebook has no such cell or more than one.
    """
    indices = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    if not indices:
        raise ParameterError(f"{path}: no code cell is tagged 'parameters'; tag the cell that declares the defaults")
    if len(indices) > 1:
        cells = ", ".join(str(i) for i in indices)
        raise ParameterError(f"{path}: {len(indices)} cells are tagged 'parameters' (cells {cells}); keep one")
    return indices[0]


def parse_parameters(source: str, path: Path | str = "notebook") -> dict[str, Parameter]:
    """Parse the declarations of a parameters cell.

    Parameters
    ----------
    source : str
        The cell's source code.
    path : path or str
        Used in error messages.

    Returns
    -------
    dict of str to Parameter
        In the order of the cell.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{path}: the parameters cell is not valid Python: {exc}") from exc
    comments = _comments_by_line(source)
    params: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = ", ".join(ast.unparse(t) for t in node.targets)
            raise ParameterError(
                f"{path}: parameter {names} has no type annotation; write it as `{names}: TYPE = value  # help`"
            )
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            raise ParameterError(f"{path}: line {node.lineno} of the parameters cell is not an annotated assignment")
        name = node.target.id
        if name in params:
            raise ParameterError(f"{path}: parameter {name!r} is declared twice in the parameters cell")
        annotation = ast.unparse(node.annotation)
        base, item, optional = _parse_annotation(node.annotation, f"{path}: parameter {name!r}")
        if node.value is None:
            raise ParameterError(f"{path}: parameter {name!r} has no default value")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            default = _literal_special(node.value, f"{path}: parameter {name!r}")
        help_text = comments.get(node.end_lineno or node.lineno, "")
        low, high, choices = _constraints(help_text, f"{path}: parameter {name!r}")
        param = Parameter(name, annotation, base, item, optional, default, help_text, low, high, choices)
        params[name] = param
        check_value(param, default, source="default")
    return params


def _comments_by_line(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except tokenize.TokenError:
        pass
    return comments


def _literal_special(node: ast.AST, where: str) -> Any:
    # float("nan") and float("inf") are the usual literals for non-finite defaults.
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    ):
        return float(node.args[0].value)
    raise ParameterError(f"{where}: the default must be a literal (number, string, list, dict, None)")


def _parse_annotation(node: ast.AST, where: str) -> tuple[str, str | None, bool]:
    """Return (base type, item type, optional) of an annotation such as ``list[int] | None``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [node.left, node.right]
        nones = [p for p in parts if isinstance(p, ast.Constant) and p.value is None]
        others = [p for p in parts if p not in nones]
        if len(nones) != 1 or len(others) != 1:
            raise ParameterError(f"{where}: only `TYPE | None` unions are supported, got {ast.unparse(node)}")
        base, item, _ = _parse_annotation(others[0], where)
        return base, item, True
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Optional":
        base, item, _ = _parse_annotation(node.slice, where)
        return base, item, True
    if isinstance(node, ast.Name) and node.id in _BASE_TYPES:
        return node.id, None, False
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("list", "dict"):
        inner = node.slice
        if node.value.id == "list" and isinstance(inner, ast.Name) and inner.id in ("int", "float", "bool", "str"):
            return "list", inner.id, False
        return node.value.id, None, False
    allowed = "int, float, bool, str, list, dict, list[int], ..., and TYPE | None"
    raise ParameterError(f"{where}: unsupported annotation {ast.unparse(node)}; use {allowed}")


def _constraints(help_text: str, where: str) -> tuple[float | None, float | None, tuple[str, ...] | None]:
    low = high = None
    choices = None
    match = _RANGE.search(help_text)
    if match:
        try:
            low = float(match.group(1)) if match.group(1).strip() else None
            high = float(match.group(2)) if match.group(2).strip() else None
        except ValueError as exc:
            raise ParameterError(f"{where}: invalid range in comment {help_text!r}") from exc
    match = _CHOICES.search(help_text)
    if match:
        choices = tuple(c.strip() for c in match.group(1).split(",") if c.strip())
    return low, high, choices


def check_value(param: Parameter, value: Any, source: str = "value") -> Any:
    """Check a typed value against a declaration and return it (ints widened for floats).

    Raises
    ------
    ParameterError
        Naming the parameter, the value, the expected type and the allowed range.
    """
    where = f"parameter {param.name!r}"
    if value is None:
        if param.optional:
            return None
        raise ParameterError(f"{where}: {source} None is not allowed; expected {param.annotation}")
    expected = _BASE_TYPES[param.base]
    if param.base == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (param.base == "int" and isinstance(value, bool)):
        raise ParameterError(f"{where}: {source} {value!r} is a {type(value).__name__}; expected {param.annotation}")
    if param.base == "list" and param.item:
        item_type = _BASE_TYPES[param.item]
        for element in value:
            ok = isinstance(element, item_type) and not (param.item == "int" and isinstance(element, bool))
            if param.item == "float" and isinstance(element, int) and not isinstance(element, bool):
                ok = True
            if not ok:
                raise ParameterError(f"{where}: element {element!r} of {source} {value!r} is not {param.item}")
    numbers = value if param.base == "list" else [value]
    for number in numbers:
        if isinstance(number, int | float) and not isinstance(number, bool):
            if param.low is not None and not (number >= param.low):
                raise ParameterError(f"{where}: {source} {number!r} is below the allowed range {_range(param)}")
            if param.high is not None and not (number <= param.high):
                raise ParameterError(f"{where}: {source} {number!r} is above the allowed range {_range(param)}")
    if param.choices is not None and param.base == "str" and value not in param.choices:
        raise ParameterError(f"{where}: {source} {value!r} is not one of {{{', '.join(param.choices)}}}")
    return value


def _range(param: Parameter) -> str:
    low = "" if param.low is None else f"{param.low:g}"
    high = "" if param.high is None else f"{param.high:g}"
    return f"[{low}, {high}]"


def parse_text_value(param: Parameter, text: str) -> Any:
    """Convert a command-line value to the declared type (see the module docstring for the rules)."""
    where = f"parameter {param.name!r}"
    stripped = text.strip()
    if param.optional and stripped.lower() in _NONE_TEXT and param.base != "str":
        return check_value(param, None)
    if param.optional and param.base == "str" and stripped in ("null", "~"):
        return None
    try:
        if param.base == "str":
            value: Any = text
        elif param.base == "int":
            if not re.fullmatch(r"[+-]?\d+", stripped):
                raise ValueError
            value = int(stripped)
        elif param.base == "float":
            value = float(stripped)
        elif param.base == "bool":
            lowered = stripped.lower()
            if lowered in _TRUE_TEXT:
                value = True
            elif lowered in _FALSE_TEXT:
                value = False
            else:
                raise ValueError
        else:
            value = yaml.safe_load(stripped)
    except (ValueError, yaml.YAMLError):
        raise ParameterError(
            f"{where}: value {text!r} is not a valid {param.annotation}; e.g. {param.name}={_example(param)}"
        ) from None
    return check_value(param, value)


def _example(param: Parameter) -> str:
    examples = {"int": "3", "float": "0.1", "bool": "true", "str": "text", "list": "[1, 2]", "dict": "{a: 1}"}
    return examples[param.base]


def unknown_name_error(name: str, params: Mapping[str, Parameter], where: str) -> ParameterError:
    """Build the error for an undeclared parameter: a did-you-mean hint and the valid names."""
    close = difflib.get_close_matches(name, list(params), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listing = "\n".join(f"  {p.describe()}" for p in params.values())
    return ParameterError(f"{where}: unknown parameter {name!r}.{hint} Valid parameters:\n{listing}")


def load_profiles(path: Path, params: Mapping[str, Parameter]) -> dict[str, dict[str, Any]]:
    """Read ``profiles.yaml`` and check every override against the parameters cell."""
    raw = load_yaml(path, ParameterError, "every paper needs profiles ci, book and large") or {}
    if not isinstance(raw, dict):
        raise ParameterError(f"{path} must map profile names to parameter overrides")
    missing = [p for p in PROFILES if p not in raw]
    if missing:
        raise ParameterError(f"{path}: missing profiles {', '.join(missing)}")
    profiles: dict[str, dict[str, Any]] = {}
    for profile, overrides in raw.items():
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise ParameterError(f"{path}: profile {profile!r} must be a mapping of parameter overrides")
        checked = {}
        for name, value in overrides.items():
            if name not in params:
                raise unknown_name_error(name, params, f"{path}: profile {profile!r}")
            if isinstance(value, str) and params[name].base == "float":
                value = parse_text_value(params[name], value)
            try:
                checked[name] = check_value(params[name], value, source=f"profile {profile!r} value")
            except ParameterError as exc:
                raise ParameterError(f"{path}: {exc}") from exc
        profiles[profile] = checked
    return profiles


def resolve_parameters(
    params: Mapping[str, Parameter],
    profile_overrides: Mapping[str, Any],
    cli_values: Mapping[str, str],
    where: str,
) -> dict[str, Any]:
    """Merge defaults, a profile and ``-p`` values (in that order) into the full parameter set."""
    resolved = {name: p.default for name, p in params.items()}
    resolved.update(profile_overrides)
    for name, text in cli_values.items():
        if name not in params:
            raise unknown_name_error(name, params, where)
        resolved[name] = parse_text_value(params[name], text)
    return resolved


def parse_assignments(items: list[str]) -> dict[str, str]:
    """Split ``NAME=VALUE`` strings from the command line, keeping the value as text."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ParameterError(f"-p {item!r} is not of the form NAME=VALUE, e.g. -p seed=3")
        if name.strip() in values:
            raise ParameterError(f"-p {name.strip()} is given twice; give each parameter once")
        values[name.strip()] = text
    return values


def is_finite_number(value: Any) -> bool:
    """Return True for a finite int or float (bools excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
