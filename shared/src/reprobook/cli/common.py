"""Helpers shared by the verbs: the project root and error reporting."""

from __future__ import annotations

import sys
from pathlib import Path

from ..project import ProjectError, find_root


def root_or_exit() -> Path:
    """Return the project root, or print the reason and exit with status 2."""
    try:
        return find_root()
    except ProjectError as exc:
        fail(str(exc))
        raise AssertionError("unreachable") from exc


def fail(message: str, status: int = 2) -> None:
    """Print an error to standard error and exit."""
    print(f"reprobook: error: {message}", file=sys.stderr)
    sys.exit(status)
