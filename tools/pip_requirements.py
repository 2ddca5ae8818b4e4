"""Print the `pip:` section of environment.yml as a requirements file.

Runs before any package is installed, so it reads the file with the standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path


def pip_section(text: str) -> list[str]:
    """Return the entries listed under `- pip:` in a conda environment file."""
    entries: list[str] = []
    inside = False
    indent = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("- pip:"):
            inside = True
            continue
        if not inside or not stripped or stripped.startswith("#"):
            continue
        current = len(line) - len(line.lstrip())
        if indent is None:
            indent = current
        if current < indent or not stripped.startswith("- "):
            break
        entries.append(stripped[2:].strip())
    if not entries:
        raise SystemExit("environment.yml has no `- pip:` section with packages")
    return entries


if __name__ == "__main__":
    print("\n".join(pip_section(Path(sys.argv[1]).read_text())))
