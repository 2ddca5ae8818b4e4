"""``reprobook check``: list every paper whose files cannot run (parameters cell, profiles, paper.yaml)."""

from __future__ import annotations

from ..project import get_paper, list_papers
from .common import root_or_exit


def add_parser(sub) -> None:
    parser = sub.add_parser("check", help="check every paper's paper.yaml, parameters cell and profiles")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Print each problem; exit 1 when there is any."""
    root = root_or_exit()
    problems = 0
    for slug in list_papers(root):
        for problem in get_paper(root, slug).check():
            print(f"{slug}: {problem}")
            problems += 1
    if problems:
        print(f"{problems} problem(s)")
        return 1
    print(f"{len(list_papers(root))} papers checked, no problems")
    return 0
