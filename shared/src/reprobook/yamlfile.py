"""Reading the project's YAML files with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_yaml(path: Path, error: type[Exception], missing_hint: str) -> Any:
    """Parse a YAML file, raising ``error`` when it is missing or invalid.

    Parameters
    ----------
    path : Path
        The file to read.
    error : exception type
        Raised with the path in the message, chained to the original exception.
    missing_hint : str
        What the message adds after "not found", e.g. what the file must contain.

    Returns
    -------
    Any
        The parsed document (None for an empty file).
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path} not found; {missing_hint}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML: {exc}") from exc
