"""Cache keys change with what a run depends on, and only with that."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from reprobook import cache as cache_module
from reprobook.cache import Cache, cache_key
from reprobook.scaffold import scaffold

from .conftest import copy_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = copy_project(tmp_path / "book", papers=[])
    scaffold(root, "alpha")
    scaffold(root, "beta")
    return root


def key_of(root: Path, slug: str = "alpha", parameters: dict | None = None) -> str:
    folder = root / "papers" / slug
    notebook = folder / f"{slug}.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    return cache_key(nb, parameters or {"seed": 0}, folder, notebook, root)


def edit_cell(root: Path, index: int, text: str, slug: str = "alpha") -> None:
    path = root / "papers" / slug / f"{slug}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[index].source += text
    nbformat.write(nb, path)


def test_key_is_stable(project):
    assert key_of(project) == key_of(project)


def test_code_cell_change_invalidates(project):
    before = key_of(project)
    edit_cell(project, 2, "\nx = 1")
    assert key_of(project) != before


def test_markdown_change_keeps_key(project):
    before = key_of(project)
    edit_cell(project, 0, "\nMore prose.")
    assert key_of(project) == before


def test_parameters_change_invalidates(project):
    assert key_of(project, parameters={"seed": 0}) != key_of(project, parameters={"seed": 1})


@pytest.mark.parametrize("name", ["helpers.py", "paper.yaml", "data/table.csv"])
def test_paper_file_change_invalidates(project, name):
    before = key_of(project)
    path = project / "papers" / "alpha" / name
    path.parent.mkdir(exist_ok=True)
    with open(path, "a") as handle:
        handle.write("\n# changed\n")
    assert key_of(project) != before


def test_other_paper_change_keeps_key(project):
    before = key_of(project)
    edit_cell(project, 2, "\nx = 1", slug="beta")
    (project / "papers" / "beta" / "helpers.py").write_text("y = 2\n")
    assert key_of(project) == before


def test_shared_package_change_invalidates(project, tmp_path, monkeypatch):
    package_copy = tmp_path / "reprobook"
    shutil.copytree(cache_module.package_source_dir(), package_copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache_module, "package_source_dir", lambda: package_copy)
    before = key_of(project)
    with open(package_copy / "stats.py", "a") as handle:
        handle.write("\n# changed\n")
    assert key_of(project) != before


def test_environment_change_invalidates(project):
    before = key_of(project)
    with open(project / "environment.yml", "a") as handle:
        handle.write("# changed\n")
    assert key_of(project) != before


def test_corrupt_entry_is_a_miss(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("k" * 64, "{}", [], {"seconds": 1.0})
    assert cache.get("k" * 64) is not None
    (tmp_path / "cache" / ("k" * 64) / "executed.ipynb").write_text('{"cells": [')
    assert cache.get("k" * 64) is None
    assert not (tmp_path / "cache" / ("k" * 64)).exists()


def test_missing_entry_file_is_a_miss(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("a" * 64, "{}", [], {})
    (tmp_path / "cache" / ("a" * 64) / "meta.json").unlink()
    assert cache.get("a" * 64) is None
