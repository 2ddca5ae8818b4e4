"""``reprobook claims``: the claims table of the last build."""

from __future__ import annotations

import csv
import json
import sys

from ..claims import format_value
from ..pipeline import RESULTS_DIR
from .common import fail, root_or_exit

FIELDS = ["paper", "claim", "verdict", "value", "interval", "paper_value", "reported", "scale", "n_seeds"]


def add_parser(sub) -> None:
    parser = sub.add_parser("claims", help="print the claims table of the last build")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print JSON")
    group.add_argument("--csv", action="store_true", help="print CSV")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Print the table in the requested format."""
    root = root_or_exit()
    path = root / RESULTS_DIR / "claims.json"
    if not path.is_file():
        fail(f"no build results at {path}; run `reprobook build` first")
    records = json.loads(path.read_text())
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        print()
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    else:
        for r in records:
            print(f"{r['paper']:40} {r['claim']:4} {r['verdict']:15} {format_value(r)}")
    return 0
