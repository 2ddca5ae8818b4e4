"""Fixtures: copies of the project in temporary folders, and the CLI as a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reprobook.project import list_papers

ROOT = Path(__file__).resolve().parents[1]
PAPERS = list_papers(ROOT)
SKELETON = [
    "_config.yml",
    "_toc.yml",
    "environment.yml",
    "book/intro.md",
    "book/method.md",
    "book/rerunning.md",
    "book/_static",
    "book/citing.md",
    "book/references.md",
    "book/benchmarks.md",
    "book/catalogue.yaml",
    "CITATION.cff",
]


def copy_project(target: Path, papers: list[str] | None = None) -> Path:
    """Copy the book's skeleton and the given paper folders (default: all) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in SKELETON:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / "papers").mkdir(exist_ok=True)
    for slug in PAPERS if papers is None else papers:
        shutil.copytree(
            ROOT / "papers" / slug,
            target / "papers" / slug,
            ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"),
        )
    return target


def cli(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``python -m reprobook ARGS`` in ``root`` and return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "reprobook", *args], cwd=root, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A copy of the whole project whose cache is shared by the paper and book tests."""
    return copy_project(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="session")
def ci_runs(project: Path, tmp_path_factory) -> dict[str, tuple]:
    """Execute every paper at `ci` in parallel, then `run` each one (a cache hit) into its own folder."""
    build = cli(project, "build", "--profile", "ci", "--no-render", "--jobs", "2")
    runs = {}
    for slug in PAPERS:
        out = tmp_path_factory.mktemp(slug)
        runs[slug] = (cli(project, "run", slug, "--profile", "ci", "--output-dir", str(out)), out)
    runs["_build"] = (build, None)
    return runs
