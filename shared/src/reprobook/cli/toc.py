"""``reprobook toc``: regenerate ``_toc.yml`` from the papers' topics."""

from __future__ import annotations

from ..book import write_toc
from .common import root_or_exit


def add_parser(sub) -> None:
    parser = sub.add_parser("toc", help="regenerate _toc.yml from papers/*/paper.yaml")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Write the table of contents when it changed."""
    root = root_or_exit()
    changed = write_toc(root)
    print("_toc.yml updated" if changed else "_toc.yml is current")
    return 0
