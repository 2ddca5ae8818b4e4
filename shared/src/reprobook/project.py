"""The project's layout: where the papers, the book and the cache live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import nbformat

from .claims import ClaimsError, load_paper_yaml
from .params import Parameter, ParameterError, find_parameters_cell, load_profiles, parse_parameters

ROOT_ENV = "REPROBOOK_ROOT"


class ProjectError(RuntimeError):
    """The project root or a paper could not be found."""


def find_root(start: Path | None = None) -> Path:
    """Return the project root: ``REPROBOOK_ROOT``, else the nearest parent with ``_config.yml`` and ``papers/``."""
    env = os.environ.get(ROOT_ENV)
    if env:
        root = Path(env).resolve()
        if not (root / "papers").is_dir():
            raise ProjectError(f"{ROOT_ENV}={env} has no papers/ folder; point it at the book's root")
        return root
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "_config.yml").is_file() and (candidate / "papers").is_dir():
            return candidate
    raise ProjectError(
        f"no book root (a folder with _config.yml and papers/) at or above {here}; "
        f"run from inside the project or set {ROOT_ENV}"
    )


@dataclass(frozen=True)
class PaperFolder:
    """A paper's folder with its notebook, declared parameters and profiles."""

    root: Path
    slug: str

    @property
    def folder(self) -> Path:
        """The folder ``papers/<slug>``."""
        return self.root / "papers" / self.slug

    @property
    def notebook_path(self) -> Path:
        """The notebook ``papers/<slug>/<slug>.ipynb``."""
        return self.folder / f"{self.slug}.ipynb"

    @cached_property
    def meta(self) -> dict[str, Any]:
        """The validated contents of ``paper.yaml``."""
        return load_paper_yaml(self.folder / "paper.yaml")

    def read_notebook(self) -> Any:
        """Read the source notebook (nbformat 4)."""
        try:
            return nbformat.read(self.notebook_path, as_version=4)
        except FileNotFoundError as exc:
            raise ProjectError(f"{self.notebook_path} not found; each paper folder must contain <slug>.ipynb") from exc
        except Exception as exc:  # nbformat raises several unrelated types for unreadable JSON
            raise ProjectError(f"{self.notebook_path} is not a readable notebook: {exc}") from exc

    @cached_property
    def parameters(self) -> dict[str, Parameter]:
        """Declarations of the notebook's parameters cell."""
        nb = self.read_notebook()
        index = find_parameters_cell(nb, self.notebook_path)
        return parse_parameters(nb.cells[index].source, self.notebook_path)

    @cached_property
    def profiles(self) -> dict[str, dict[str, Any]]:
        """Profiles from ``profiles.yaml``, checked against the parameters cell."""
        return load_profiles(self.folder / "profiles.yaml", self.parameters)

    def check(self) -> list[str]:
        """Return every problem with this paper's files (an empty list when it is sound)."""
        problems = []
        for step in (lambda: self.meta, lambda: self.parameters, lambda: self.profiles):
            try:
                step()
            except (ClaimsError, ParameterError, ProjectError) as exc:
                problems.append(str(exc))
                break
        if not problems and "seed" not in self.parameters:
            problems.append(f"{self.notebook_path}: the parameters cell declares no 'seed: int'")
        return problems


def list_papers(root: Path) -> list[str]:
    """Return the slugs of every folder under ``papers/`` that contains a ``paper.yaml``, sorted."""
    return sorted(p.parent.name for p in (root / "papers").glob("*/paper.yaml"))


def get_paper(root: Path, slug: str) -> PaperFolder:
    """Return the paper folder for ``slug``, or raise listing the known slugs."""
    if not (root / "papers" / slug / "paper.yaml").is_file():
        known = ", ".join(list_papers(root)) or "none"
        raise ProjectError(f"no paper {slug!r} under {root / 'papers'}; known papers: {known}")
    return PaperFolder(root, slug)
