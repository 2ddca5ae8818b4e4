"""``reprobook build``: execute what is stale in parallel, then render the book."""

from __future__ import annotations

from ..pipeline import BuildLockedError, build
from ..project import ProjectError
from .common import fail, root_or_exit
from .executor_options import add_executor_arguments, open_executor


def add_parser(sub) -> None:
    parser = sub.add_parser("build", help="execute stale papers in parallel and render the book")
    parser.add_argument("--profile", default="book", help="profile to build (default: book)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel notebooks (default: one per core)")
    parser.add_argument("--only", nargs="+", default=[], metavar="SLUG", help="execute only these papers")
    parser.add_argument("--force", action="store_true", help="re-execute even when cached")
    parser.add_argument("--no-render", action="store_true", help="execute and write pages, but skip Jupyter Book")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before one notebook is stopped")
    add_executor_arguments(parser, jobs=False)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    """Build; exit 1 when a notebook failed or the book did not render cleanly."""
    root = root_or_exit()
    if args.jobs is not None and args.jobs < 1:
        fail(f"--jobs {args.jobs} must be at least 1")
    try:
        with open_executor(args) as executor:
            result = build(
                root,
                args.profile,
                args.jobs,
                args.only,
                args.force,
                executor,
                render=not args.no_render,
                timeout=args.timeout,
            )
    except (BuildLockedError, ProjectError) as exc:
        fail(str(exc))
    report = result.report
    for entry in report["papers"]:
        print(f"{entry['slug']:40} {entry['status']:10} {entry['seconds']:7.1f} s")
    print(f"{report['counts']} in {report['wall_seconds']:.1f} s; report: _build/reprobook/build-report.json")
    if result.render_status not in (None, 0):
        print("reprobook: error: Jupyter Book failed; see _build/reprobook/render.log")
        print(result.render_log[-3000:])
    elif result.render_status == 0:
        print(f"book: {root / '_build' / 'html' / 'index.html'}")
    return 0 if result.ok else 1
