"""The ``reprobook`` command: one module per verb, each a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import sys

from . import build, check, claims, clean, list_papers, new, run, sweep, toc

VERBS = {
    "list": list_papers,
    "run": run,
    "sweep": sweep,
    "build": build,
    "claims": claims,
    "new": new,
    "clean": clean,
    "check": check,
    "toc": toc,
}


def make_parser() -> argparse.ArgumentParser:
    """Return the argument parser with one sub-command per verb."""
    parser = argparse.ArgumentParser(prog="reprobook", description="Run and build the reproducibility book.")
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level"
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in VERBS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
