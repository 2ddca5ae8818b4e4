"""``reprobook new``: scaffold a paper folder that passes the tests."""

from __future__ import annotations

from ..scaffold import scaffold
from .common import fail, root_or_exit


def add_parser(sub) -> None:
    parser = sub.add_parser("new", help="create papers/SLUG/ from the template")
    parser.add_argument("slug", help="folder name: lower-case words joined by hyphens")
    parser.add_argument("--topic", default="uncategorised", help="part of the book the chapter goes in")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Create the folder and print what to edit next."""
    root = root_or_exit()
    try:
        folder = scaffold(root, args.slug, args.topic)
    except ValueError as exc:
        fail(str(exc))
    print(f"created {folder}: edit paper.yaml, profiles.yaml and {args.slug}.ipynb, then run")
    print(f"  reprobook run {args.slug} --profile ci --output-dir out/")
    return 0
