"""``reprobook sweep``: run one paper over a grid of parameter values and report each claim."""

from __future__ import annotations

from pathlib import Path

from ..pipeline import Progress
from ..runner import RunError
from ..sweep import DEFAULT_MAX_POINTS, SweepError, plan_sweep, run_sweep, write_report
from .common import fail, root_or_exit
from .executor_options import add_executor_arguments, open_executor


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "sweep",
        help="run one paper over the cartesian grid of -p values; write a report and a figure per claim",
    )
    parser.add_argument("slug", help="the paper's folder name under papers/")
    parser.add_argument("--profile", default="book", help="profile the grid's values override (default: book)")
    parser.add_argument(
        "-p",
        dest="grid",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="values of one parameter: V1,V2,... (commas inside [...] belong to a list value), or "
        "START:STOP[:STEP] for an int parameter, where STOP is excluded as in Python's range "
        "(seed=0:4 is 0, 1, 2, 3); repeat for each swept parameter",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=DEFAULT_MAX_POINTS,
        help=f"reject grids with more points than this (default: {DEFAULT_MAX_POINTS})",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("out"), help="folder for the report and figures (default: out)"
    )
    parser.add_argument("--force", action="store_true", help="execute every point even when the cache has it")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before one grid point's run is stopped")
    add_executor_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Validate the whole grid, run it, write the report; exit 1 when a point failed, 2 when the request was invalid."""
    root = root_or_exit()
    if not args.grid:
        fail("give at least one -p NAME=VALUES to sweep, e.g. -p seed=0:4")
    try:
        plan = plan_sweep(root, args.slug, args.grid, args.profile, args.max_points)
    except (RunError, SweepError) as exc:
        fail(str(exc))
    with open_executor(args, default_local=True) as executor:
        bar = Progress(len(plan.prepared))
        try:
            result = run_sweep(root, plan, executor, force=args.force, timeout=args.timeout, on_event=bar)
        finally:
            bar.close()
    paths = write_report(result, args.output_dir)

    names = [axis.name for axis in plan.axes]
    for point, record in zip(plan.points, result.records, strict=True):
        label = ", ".join(f"{name}={point[name]}" for name in names)
        verdicts = " ".join(f"{c['claim']}:{c['verdict']}" for c in record.claims)
        print(f"{label:40} {record.status:10} {record.seconds:7.1f} s  {verdicts}")
    for claim, counts in result.summary().items():
        print(f"{claim}: reproduced at {counts['reproduced']} of {counts['points']} grid points")
    print(f"{len(plan.points)} points in {result.wall_seconds:.1f} s on {result.executor} ({result.jobs} jobs)")
    print("wrote " + ", ".join(str(path) for path in paths))
    failed = [r for r in result.records if not r.ok]
    for record in failed:
        print(f"reprobook: error: {record.error}")
    return 1 if failed else 0
