"""``dfrobust status``: which stages of a run are done."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command


#: Position of this command in ``dfrobust --help``.
ORDER = 80


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand."""
    p = add_command(subparsers, "status", "Show which stages of a run are done, partial or still to do",
                    ["dfrobust status --run runs/quick"])
    p.add_argument("--run", required=True, help="the run folder given to `dfrobust reproduce`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per stage: state, seconds, output."""
    from pathlib import Path

    from dfrobust.pipeline import stored_stages
    from dfrobust.stages import StageRunner

    rows = StageRunner(args.run, log=lambda s: None).table(stored_stages(args.run))
    width = max(len(r["stage"]) for r in rows)
    for r in rows:
        secs = f"{r['seconds']:8.1f} s" if r["seconds"] is not None else " " * 10
        print(f"{r['stage']:<{width}}  {r['state']:<8} {secs}  {r['output']}")
    done = sum(r["state"] == "done" for r in rows)
    print(f"{done}/{len(rows)} stages done" + ("" if done < len(rows) else f"; report: {Path(args.run) / 'report' / 'report.html'}"))
    return 0
