"""``reprobook list``: the papers, their topic, claim count and last verdicts."""

from __future__ import annotations

import json
from collections import Counter

from ..pipeline import RESULTS_DIR
from ..project import get_paper, list_papers
from .common import root_or_exit


def add_parser(sub) -> None:
    parser = sub.add_parser("list", help="list the papers with topic, claim count and last verdicts")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Print one line per paper."""
    root = root_or_exit()
    last: dict[str, Counter] = {}
    claims_file = root / RESULTS_DIR / "claims.json"
    if claims_file.is_file():
        for record in json.loads(claims_file.read_text()):
            last.setdefault(record["paper"], Counter())[record["verdict"]] += 1
    print(f"{'paper':40} {'topic':28} {'claims':>6}  last verdicts")
    for slug in list_papers(root):
        paper = get_paper(root, slug)
        try:
            meta = paper.meta
            topic, count = meta["topic"], len(meta["claims"])
        except Exception as exc:  # a broken paper.yaml is listed, not fatal
            print(f"{slug:40} invalid paper.yaml: {exc}")
            continue
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(last.get(slug, Counter()).items())) or "not built"
        print(f"{slug:40} {topic:28} {count:>6}  {verdicts}")
    return 0
