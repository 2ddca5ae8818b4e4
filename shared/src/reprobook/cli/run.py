"""``reprobook run``: execute one paper at a profile, with ``-p`` overrides, into an output folder."""

from __future__ import annotations

from pathlib import Path

from ..params import ParameterError, parse_assignments
from ..runner import RunError, run_paper
from .common import fail, root_or_exit
from .executor_options import add_executor_arguments, open_executor


def add_parser(sub) -> None:
    parser = sub.add_parser("run", help="execute one paper and write SLUG.ipynb and SLUG.claims.json")
    parser.add_argument("slug", help="the paper's folder name under papers/")
    parser.add_argument("--profile", default="book", help="profile from profiles.yaml (default: book)")
    parser.add_argument(
        "-p",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter of the notebook; repeat for several",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("out"), help="folder for the outputs (default: out)")
    parser.add_argument("--force", action="store_true", help="execute even when the cache has this run")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the run is stopped")
    add_executor_arguments(parser, jobs=False)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Run the paper; exit 1 when the notebook failed, 2 when the request was invalid."""
    root = root_or_exit()
    try:
        values = parse_assignments(args.params)
        with open_executor(args) as executor:
            record = run_paper(
                root, args.slug, args.profile, values, args.output_dir, executor, force=args.force, timeout=args.timeout
            )
    except (RunError, ParameterError) as exc:
        fail(str(exc))
    width = max(len(c["claim"]) for c in record.claims)
    print(f"{record.slug} [{record.profile}] {record.status} in {record.seconds:.1f} s")
    for claim in record.claims:
        print(f"  {claim['claim']:{width}}  {claim['verdict']}")
    print(f"wrote {args.output_dir / (record.slug + '.ipynb')} and {args.output_dir / (record.slug + '.claims.json')}")
    if not record.ok:
        print(f"reprobook: error: {record.error}")
        return 1
    return 0
