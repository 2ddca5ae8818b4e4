"""``reprobook clean``: remove the cache, the executed chapters and the rendered book."""

from __future__ import annotations

import shutil

from .common import root_or_exit


def add_parser(sub) -> None:
    parser = sub.add_parser("clean", help="remove the cache (.reprobook), book/papers and _build")
    parser.add_argument("--keep-cache", action="store_true", help="keep executed notebooks in the cache")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Delete the generated folders."""
    root = root_or_exit()
    targets = [root / "_build", root / "book" / "papers", root / "book" / "_generated"]
    if not args.keep_cache:
        targets.append(root / ".reprobook")
    for target in targets:
        if target.exists():
            shutil.rmtree(target)
            print(f"removed {target}")
    return 0
