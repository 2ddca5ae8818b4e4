"""The build benchmark: its overhead rules on constructed notebooks, and a quick run end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "build_times.py"


def load_script():
    spec = importlib.util.spec_from_file_location("build_times", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_times = load_script()


def timed_notebook() -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: parameters, injected parameters, two import cells, two experiments."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"start_time": "2026-01-01T00:00:00+00:00", "duration": 10.5}
    cells = [
        ("markdown", "# Title", None, 1.0, 0.0),
        ("code", "seed: int = 0", ["parameters"], 1.0, 0.1),
        ("code", "seed = 1", ["injected-parameters"], 1.1, 0.1),
        ("code", "import numpy as np\nx = np.ones(3)", None, 1.2, 2.0),
        ("code", "from math import pi", None, 3.2, 0.5),
        ("code", "y = x * pi\nimport os", None, 3.7, 4.0),
        ("code", "%time y.sum()", None, 7.7, 3.0),
    ]
    for kind, source, tags, start, duration in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        cell.metadata["papermill"] = {"start_time": f"2026-01-01T00:00:{start:04.1f}+00:00", "duration": duration}
        nb.cells.append(cell)
    return nb


def test_import_cells_stop_at_first_other_cell():
    nb = timed_notebook()
    assert build_times.import_cell_indices(nb) == {3, 4}


def test_import_cells_skip_magics():
    nb = timed_notebook()
    nb.cells[3].source = "%matplotlib inline\nimport numpy as np"
    assert build_times.import_cell_indices(nb) == set()


def test_overhead_parts_add_up():
    parts = build_times.notebook_overhead(timed_notebook(), total_seconds=12.0)
    assert parts["own"] == pytest.approx(7.0)
    assert parts["imports"] == pytest.approx(2.5)
    assert parts["kernel_start"] == pytest.approx(1.0)
    assert parts["overhead"] == pytest.approx(5.0)
    assert parts["rest"] == pytest.approx(1.5)
    assert parts["outside_papermill"] == pytest.approx(1.5)


def test_overhead_needs_papermill_times():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os")])
    with pytest.raises(ValueError, match="no papermill timestamps"):
        build_times.notebook_overhead(nb, 1.0)


def test_summary_median_and_range():
    stats = build_times.summary([3.0, None, 1.0, 2.0, 10.0])
    assert stats["median"] == 2.5
    assert (stats["min"], stats["max"], stats["n"]) == (1.0, 10.0, 4)
    assert build_times.summary([None])["median"] is None


def test_targets_ratios_and_status():
    def stat(value):
        return build_times.summary([value])

    measured = {
        "cold_jobs2": stat(30.0),
        "noop": stat(12.0),
        "code_change": stat(20.0),
        "jupyter_book": stat(60.0),
        "render": stat(10.0),
        "per_paper": {
            "a": {"own": stat(10.0), "overhead": stat(3.0)},
            "b": {"own": stat(20.0), "overhead": stat(5.0)},
        },
    }
    by_name = {row["target"]: row for row in build_times.targets(measured, changed="a")}
    assert by_name["cold build, --jobs 2"]["limit"] == pytest.approx(1.1 * 30.0 / 2 + 10.0)
    assert by_name["cold build, --jobs 2"]["met"] is False
    assert by_name["build, nothing changed"]["ratio"] == pytest.approx(1.2)
    assert by_name["build, nothing changed"]["met"] is False
    assert by_name["build, one chapter's code changed"]["limit"] == pytest.approx(40.0)
    assert by_name["build, one chapter's code changed"]["met"] is True
    assert by_name["per-notebook overhead (worst paper)"]["value"] == 5.0
    assert by_name["per-notebook overhead (worst paper)"]["met"] is False
    assert by_name["speed-up of --jobs 2 over Jupyter Book"]["value"] == pytest.approx(2.0)
    assert by_name["speed-up of --jobs 2 over Jupyter Book"]["met"] is True


def test_comparison_rows_before_and_after():
    def measured(scale):
        names = [*build_times.MEASUREMENTS, "cold_jobs1_execution", "cold_jobs2_execution", "render"]
        return {name: build_times.summary([10.0 * scale]) for name in names}

    targets = [{"target": "build, nothing changed", "value": 12.0, "unit": "s"}]
    results = {
        "measurements": measured(0.5),
        "targets": [{**targets[0], "value": 6.0}],
        "settings": {"execution": "workers"},
        "before": {
            "file": "old.json",
            "settings": {"execution": "process"},
            "measurements": measured(1.0),
            "targets": targets,
        },
    }
    rows = build_times.comparison_rows(results)
    assert rows[0] == ("cold build, --jobs 1", "10.0", "5.0", "0.50")
    assert rows[-1] == ("target: build, nothing changed (s)", "12.0", "6.0", "0.50")
    section = "\n".join(build_times.comparison_section(results))
    assert "execution `process`" in section
    assert build_times.comparison_rows({**results, "before": None}) == []


@pytest.mark.slow
def test_quick_run_writes_every_measurement(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output-dir", str(tmp_path), "--work-dir", str(tmp_path / "work")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "work").iterdir()) == [], "the work folder was not removed"

    written = list((tmp_path / "benchmarks" / "results").glob("build_times-ci-*.json"))
    assert len(written) == 1
    results = json.loads(written[0].read_text())
    run = results["runs"][0]
    for name in build_times.MEASUREMENTS:
        assert run[name]["returncode"] == 0, f"{name}: see the log {run[name]['log']}"
        assert results["measurements"][name]["n"] == 1, name
        assert results["measurements"][name]["median"] > 0, name
    assert run["noop"]["counts"].get("executed", 0) == 0
    assert run["code_change"]["counts"].get("executed") == 1
    assert run["markdown_change"]["counts"].get("executed", 0) == 0
    assert run["jupyter_book"]["failed"] == 0
    assert results["parallel_efficiency"] > 0

    per_paper = results["measurements"]["per_paper"]
    assert sorted(per_paper) == build_times.QUICK_PAPERS
    for slug, parts in per_paper.items():
        for part in ("total", "own", "overhead", "kernel_start", "imports", "rest", "outside_papermill"):
            assert parts[part]["median"] is not None, f"{slug}: {part}"
        assert parts["own"]["median"] > 0, slug
        assert parts["kernel_start"]["median"] > 0, slug
    assert len(results["targets"]) == 5
    for row in results["targets"]:
        assert row["ratio"] is not None, row["target"]
        assert row["met"] in (True, False), row["target"]
    assert len(results["load_average"]["end"]) == 3
    assert results["machine"]["cpu"]

    page = (tmp_path / "book" / "benchmarks.md").read_text()
    for label in build_times.MEASUREMENTS.values():
        assert label in page
    assert "## Targets" in page
    assert "Quick mode" in page
    assert "](_static/benchmarks/build_times.png)" in page
    figure = tmp_path / "book" / "_static" / "benchmarks" / "build_times.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Targets" in result.stdout
