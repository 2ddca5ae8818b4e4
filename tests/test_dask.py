"""Sweeps and runs on a real Dask cluster: a scheduler and workers started here, on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from reprobook.scaffold import scaffold

from .conftest import cli, copy_project

pytestmark = pytest.mark.slow

DASK_CLI = str(Path(sys.executable).parent / "dask")
SCHEDULER = [DASK_CLI, "scheduler"]
WORKER = [DASK_CLI, "worker"]
COMPARED = ("point", "seed", "dim", "claim", "verdict", "value", "interval_low", "interval_high", "n_seeds")


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, stopped by :meth:`stop`."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder = folder
        self.workers: list[subprocess.Popen] = []

        scheduler_file = folder / "scheduler.json"
        # One retry for a task whose worker dies, then the task is reported as failed.
        env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
        self.scheduler = self._start(
            [
                *SCHEDULER,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            "scheduler",
            env,
        )

        deadline = time.monotonic() + 120
        while not scheduler_file.is_file() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler did not start; see {folder / 'scheduler.log'}")
            time.sleep(0.2)
        time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        assert self.address.startswith("tcp://127.0.0.1:")

        for index in range(workers):
            self.add_worker(f"worker-{index}")
        self.wait_for_workers(workers)

    def _start(self, command: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder)

    def add_worker(self, name: str) -> subprocess.Popen:
        """Start one single-threaded worker without a nanny, so killing it kills the worker."""
        command = [
            *WORKER,
            self.address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
            "--name",
            name,
            "--death-timeout",
            "60",
        ]
        worker = self._start(command, name)
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(count, timeout=120)

    def stop(self) -> None:
        """Kill every worker (and what it started) and the scheduler; wait for them to exit."""
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                try:
                    children = psutil.Process(process.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    children = []
                process.send_signal(signal.SIGKILL)
                for child in children:
                    try:
                        child.kill()
                    except psutil.NoSuchProcess:
                        pass
            process.wait(timeout=30)


@pytest.fixture
def cluster_factory(tmp_path):
    clusters: list[Cluster] = []

    def start(workers: int = 2) -> Cluster:
        folder = tmp_path / f"cluster-{len(clusters)}"
        folder.mkdir()
        clusters.append(Cluster(folder, workers))
        return clusters[-1]

    yield start
    for cluster in clusters:
        cluster.stop()


def add_cell_to_paper(root: Path, slug: str, parameter: str, code: str) -> None:
    """Declare one more parameter in a scaffolded paper and run ``code`` right after the imports."""
    path = root / "papers" / slug / f"{slug}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source += "\n" + parameter
    nb.cells.insert(3, nbformat.v4.new_code_cell(code))
    nbformat.write(nb, path)


def remove_scratch(slug: str) -> None:
    """Remove the scratch folders that killed workers left behind for ``slug``."""
    for folder in Path(tempfile.gettempdir()).glob(f"reprobook-{slug}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def read_rows(folder: Path, slug: str) -> list[dict]:
    return json.loads((folder / f"{slug}-sweep.json").read_text())["rows"]


def cache_entries(root: Path) -> int:
    cache = root / ".reprobook" / "cache"
    return sum(1 for p in cache.iterdir() if (p / "meta.json").is_file()) if cache.is_dir() else 0


def test_dask_sweep_matches_local_pool(tmp_path, cluster_factory):
    cluster = cluster_factory(2)
    sweep = ["sweep", "toy-paper", "-p", "seed=0:2", "-p", "dim=10,20", "--profile", "ci"]
    reports = {}
    for name, options in (("dask", ["--scheduler", cluster.address]), ("local", ["--jobs", "2"])):
        root = copy_project(tmp_path / name, papers=[])
        scaffold(root, "toy-paper", topic="testing")
        result = cli(root, *sweep, *options, "--output-dir", str(tmp_path / f"out-{name}"), timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        assert cache_entries(root) == 4
        reports[name] = read_rows(tmp_path / f"out-{name}", "toy-paper")
        assert (tmp_path / f"out-{name}" / "toy-paper-sweep-C1.png").is_file()
    assert len(reports["dask"]) == 4
    assert [r["seed"] for r in reports["dask"]] == [0, 0, 1, 1]
    assert [r["dim"] for r in reports["dask"]] == [10, 20, 10, 20]
    assert all(r["status"] == "executed" for r in reports["dask"])
    for dask_row, local_row in zip(reports["dask"], reports["local"], strict=True):
        assert {k: dask_row[k] for k in COMPARED} == {k: local_row[k] for k in COMPARED}
    report = json.loads((tmp_path / "out-dask" / "toy-paper-sweep.json").read_text())
    assert report["executor"] == "DaskExecutor"
    assert report["jobs"] == 2


def test_killed_worker_task_is_retried(tmp_path, cluster_factory):
    root = copy_project(tmp_path / "project", papers=[])
    scaffold(root, "slow-paper", topic="testing")
    add_cell_to_paper(
        root,
        "slow-paper",
        "pause: float = 0.0  # seconds the notebook sleeps before the experiment; range [0, ]",
        "import time\n\ntime.sleep(pause)",
    )
    cluster = cluster_factory(2)
    command = [sys.executable, "-m", "reprobook", "sweep", "slow-paper", "-p", "seed=0:2", "--profile", "ci"]
    command += ["-p", "pause=8", "--scheduler", cluster.address, "--output-dir", str(tmp_path / "out")]
    sweep = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = None
        deadline = time.monotonic() + 300
        while victim is None and time.monotonic() < deadline and sweep.poll() is None:
            for worker in cluster.workers:
                descendants = psutil.Process(worker.pid).children(recursive=True)
                if any("ipykernel" in " ".join(p.cmdline()) for p in descendants if p.is_running()):
                    victim = worker
                    break
            time.sleep(0.5)
        assert victim is not None, "no worker started a kernel"
        time.sleep(1.0)
        orphans = psutil.Process(victim.pid).children(recursive=True)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        output, _ = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    for orphan in orphans:
        try:
            orphan.kill()
        except psutil.NoSuchProcess:
            pass
    remove_scratch("slow-paper")
    assert sweep.returncode == 0, output
    rows = read_rows(tmp_path / "out", "slow-paper")
    assert [r["status"] for r in rows] == ["executed", "executed"]
    assert [r["verdict"] for r in rows] == ["reproduced", "reproduced"]
    assert cache_entries(root) == 2
    assert sum(1 for w in cluster.workers if w.poll() is None) == 1


def test_task_killing_its_workers_is_reported_died(tmp_path, cluster_factory):
    root = copy_project(tmp_path / "project", papers=[])
    scaffold(root, "poison-paper", topic="testing")
    kill_worker = (
        "import psutil\n\n"
        "if seed == poison_seed:\n"
        "    for process in psutil.Process().parents():\n"
        "        if 'dask worker' in ' '.join(process.cmdline()):\n"
        "            process.kill()\n"
        "            break"
    )
    add_cell_to_paper(
        root, "poison-paper", "poison_seed: int = -1  # the run with this seed kills the Dask worker", kill_worker
    )
    cluster = cluster_factory(3)
    result = cli(
        root,
        "sweep",
        "poison-paper",
        "-p",
        "seed=0:3",
        "-p",
        "poison_seed=1",
        "--profile",
        "ci",
        "--scheduler",
        cluster.address,
        "--output-dir",
        str(tmp_path / "out"),
        timeout=900,
    )
    remove_scratch("poison-paper")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = read_rows(tmp_path / "out", "poison-paper")
    assert [r["seed"] for r in rows] == [0, 1, 2]
    assert [r["status"] for r in rows] == ["executed", "died", "executed"]
    assert [r["verdict"] for r in rows] == ["reproduced", "error", "reproduced"]
    assert "worker failed" in rows[1]["error"]
    assert "KilledWorker" in rows[1]["error"] or "died" in rows[1]["error"]
    assert cache_entries(root) == 2
    assert sum(1 for w in cluster.workers if w.poll() is None) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("verb", ["sweep", "run"])
def test_unreachable_scheduler_fails_fast(tmp_path, verb):
    root = copy_project(tmp_path / "project", papers=[])
    scaffold(root, "toy-paper", topic="testing")
    address = f"tcp://127.0.0.1:{free_port()}"
    arguments = ["-p", "seed=0:2"] if verb == "sweep" else ["-p", "seed=0"]
    start = time.monotonic()
    result = cli(
        root, verb, "toy-paper", *arguments, "--profile", "ci", "--scheduler", address, "--connect-timeout", "3"
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 2
    assert f"cannot connect to the Dask scheduler at {address} within 3 s" in result.stderr
    assert elapsed < 60, f"the error took {elapsed:.0f} s"
    assert cache_entries(root) == 0
