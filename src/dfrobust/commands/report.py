"""``dfrobust report``: write the report of a run folder."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command


#: Position of this command in ``dfrobust --help``.
ORDER = 60


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    p = add_command(
        subparsers,
        "report",
        "Write RUN/report/report.html (self-contained), report.md and results.json from a run's own files",
        ["dfrobust report runs/quick"],
    )
    p.add_argument("run_dir", help="a run folder made by `dfrobust reproduce` (with --seeds: the combined report over the seeds)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render the report."""
    from dfrobust.kinds.base import STAGE_KINDS
    from dfrobust.report.render import write_report
    from dfrobust.utils.runfolder import read_plan
    from dfrobust.utils.runlock import run_lock

    from dfrobust.report.seeds_report import read_seeds, write_seeds_report

    seeds = read_seeds(args.run_dir)  # a `reproduce --seeds` folder: the combined report over its seeds' own reports
    if seeds is None:
        read_plan(args.run_dir)  # a run folder, or a one-line error (before the lock would create the folder)
    STAGE_KINDS.classes()  # a stage kind's module may register its report section
    with run_lock(args.run_dir):  # a run in progress is refused: its report would be written from half its stages
        out = write_report(args.run_dir) if seeds is None else write_seeds_report(args.run_dir)
    print(f"report: {out / 'report.html'}")
    return 0
