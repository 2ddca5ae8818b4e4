"""Faults a runner meets in practice, each built as a small paper and checked end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from .conftest import cli, copy_project

pytestmark = pytest.mark.slow

PAPER_YAML = """\
slug: {slug}
title: Fault {slug}
authors: [Test Author]
year: 2024
venue: Tests
arxiv: "0000.00000"
code: null
topic: testing
bibtex_key: {key}
claims:
  - id: C1
    statement: A claim that the test paper never measures.
    evidence: {{source: none, reported: null}}
    scale: untestable-offline
    scale_note: Test paper.
    rule: {{kind: untestable, reason: test paper}}
"""


def make_paper(
    root: Path, slug: str, body: str, parameters: str = "seed: int = 0  # base seed\n", kernel: str = "python3"
) -> Path:
    """Write a one-claim paper whose notebook runs ``body`` after its parameters cell."""
    folder = root / "papers" / slug
    folder.mkdir(parents=True)
    (folder / "paper.yaml").write_text(PAPER_YAML.format(slug=slug, key=slug.replace("-", "_")))
    (folder / "profiles.yaml").write_text("ci: {}\nbook: {}\nlarge: {}\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Fault {slug}"),
        nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(nb, folder / f"{slug}.ipynb")
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "book", papers=[])


def kernel_processes(folder: Path) -> set[int]:
    """Return the kernels whose working directory is ``folder`` (papermill starts them there)."""
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "ipykernel_launcher" not in cmdline:
            continue
        try:
            if Path(proc.cwd()) == folder:
                found.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_foreign_kernel_metadata_uses_project_kernel(root, tmp_path):
    make_paper(root, "foreign-kernel", "x = 1", kernel="conda-env-elsewhere-py")
    result = cli(root, "run", "foreign-kernel", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    executed = nbformat.read(tmp_path / "foreign-kernel.ipynb", as_version=4)
    assert executed.metadata["reprobook"]["kernel"] in ("reprobook", "python3")


def test_missing_requested_kernel_fails_before_first_cell(root, tmp_path):
    make_paper(root, "no-kernel", "raise AssertionError('must not run')")
    env = {**os.environ, "REPROBOOK_KERNEL": "no-such-kernel"}
    result = subprocess.run(
        [sys.executable, "-m", "reprobook", "run", "no-kernel", "--output-dir", str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "kernel 'no-such-kernel' (from REPROBOOK_KERNEL) is not installed" in result.stdout
    assert "must not run" not in result.stdout


def test_special_values_arrive_typed(root, tmp_path):
    parameters = (
        "seed: int = 0  # base seed\n"
        "tol: float = 1.0  # tolerance\n"
        "cap: int | None = 3  # cap\n"
        "label: str = 'x'  # label\n"
        "other: str = 'y'  # label\n"
        "upper: float = 0.0  # bound\n"
    )
    body = (
        "import math\n"
        "assert math.isnan(tol), tol\n"
        "assert cap is None, cap\n"
        "assert label == '007', label\n"
        "assert other == 'None', other\n"
        "assert upper == float('inf'), upper\n"
    )
    make_paper(root, "special-values", body, parameters)
    args = ["-p", "tol=nan", "-p", "cap=None", "-p", "label=007", "-p", "other=None", "-p", "upper=inf"]
    result = cli(root, "run", "special-values", *args, "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hostile_values_stay_data(root, tmp_path):
    parameters = "seed: int = 0  # base seed\ntext: str = ''  # free text\nitems: list = []  # free list\n"
    hostile = "x\"; raise SystemExit(\"injected\") #\n'''\\"
    body = f"assert text == {hostile!r}, repr(text)\nassert items == ['a\"b', \"__import__('os')\"], items\n"
    make_paper(root, "hostile-values", body, parameters)
    result = cli(
        root,
        "run",
        "hostile-values",
        "-p",
        f"text={hostile}",
        "-p",
        "items=['a\"b', \"__import__('os')\"]",
        "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_timeout_stops_kernel_that_ignores_interrupts(root, tmp_path):
    body = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)"
    folder = make_paper(root, "stuck-cell", body)
    start = time.monotonic()
    result = cli(root, "run", "stuck-cell", "--timeout", "15", "--output-dir", str(tmp_path))
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert "timed out after 15 s" in result.stdout
    assert elapsed < 60
    time.sleep(1)
    assert kernel_processes(folder) == set(), "a kernel outlived the timed-out run"
    claims = json.loads((tmp_path / "stuck-cell.claims.json").read_text())
    assert claims[0]["verdict"] == "untestable"


def test_timed_out_chapter_says_so(root):
    make_paper(root, "slow-chapter", "import time\ntime.sleep(600)")
    result = cli(root, "build", "--timeout", "15")
    assert result.returncode == 1
    report = json.loads((root / "_build" / "reprobook" / "build-report.json").read_text())
    assert report["papers"][0]["status"] == "timed-out"
    page = (root / "_build" / "html" / "book" / "papers" / "slow-chapter.html").read_text()
    assert "This run timed out" in page


def test_dying_kernel_reported_and_others_continue(root):
    make_paper(root, "dying-kernel", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    make_paper(root, "healthy", "x = 1")
    start = time.monotonic()
    result = cli(root, "build", "--jobs", "2", "--no-render")
    assert time.monotonic() - start < 120
    assert result.returncode == 1
    report = json.loads((root / "_build" / "reprobook" / "build-report.json").read_text())
    status = {p["slug"]: p for p in report["papers"]}
    assert status["healthy"]["status"] == "executed"
    assert status["dying-kernel"]["status"] in ("died", "failed")
    assert status["dying-kernel"]["seconds"] < 60
    assert "cell 2" in status["dying-kernel"]["error"]


def test_concurrent_build_is_refused(root):
    make_paper(root, "sleepy", "import time\ntime.sleep(20)")
    first = subprocess.Popen(
        [sys.executable, "-m", "reprobook", "build", "--no-render"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(4)
        second = cli(root, "build", "--no-render")
        assert second.returncode == 2
        assert "another build is running" in second.stderr
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0


def test_killed_build_keeps_finished_work(root):
    make_paper(root, "quick", "x = 1")
    make_paper(root, "slow", "import time\ntime.sleep(300)")
    build = subprocess.Popen(
        [sys.executable, "-m", "reprobook", "build", "--jobs", "2", "--no-render"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cache = root / ".reprobook" / "cache"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(p.is_dir() and len(p.name) == 64 for p in cache.glob("*")):
        time.sleep(0.5)
    build.send_signal(signal.SIGKILL)
    build.wait()
    time.sleep(3)
    assert any(p.name for p in cache.glob("*") if len(p.name) == 64), "the finished notebook was lost"
    (root / "papers" / "slow" / "slow.ipynb").unlink()
    make_paper_notebook_only = root / "papers" / "slow"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Fault slow"),
        nbformat.v4.new_code_cell("seed: int = 0  # base seed", metadata={"tags": ["parameters"]}),
    ]
    nbformat.write(nb, make_paper_notebook_only / "slow.ipynb")
    resumed = cli(root, "build", "--jobs", "2", "--no-render")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads((root / "_build" / "reprobook" / "build-report.json").read_text())
    assert {p["slug"]: p["status"] for p in report["papers"]} == {"quick": "cached", "slow": "executed"}


@pytest.mark.parametrize("tagged", [0, 2])
def test_parameters_cell_missing_or_twice_refused(root, tmp_path, tagged):
    folder = make_paper(root, "bad-cells", "x = 1")
    path = folder / "bad-cells.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["tags"] = ["parameters"] if tagged else []
    if tagged == 2:
        nb.cells[2].metadata["tags"] = ["parameters"]
        nb.cells[2].source = "other: int = 1  # a second declaration cell"
    nbformat.write(nb, path)
    result = cli(root, "run", "bad-cells", "-p", "seed=1", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert str(path) in result.stderr
    reason = "no code cell is tagged 'parameters'" if tagged == 0 else "2 cells are tagged 'parameters'"
    assert reason in result.stderr
    assert not (tmp_path / "bad-cells.ipynb").exists()
    check = cli(root, "check")
    assert check.returncode == 1
    assert f"bad-cells: {path}" in check.stdout
