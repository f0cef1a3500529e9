"""``dfrobust status``: which stages of a run are done."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command


#: Position of this command in ``dfrobust --help``.
ORDER = 80


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand."""
    p = add_command(
        subparsers,
        "status",
        "Show which stages of a run are done, partial or still to do",
        ["dfrobust status --run runs/quick", "dfrobust status --run runs/quick --json"],
    )
    p.add_argument("--run", "--run-dir", dest="run", required=True, help="the run folder given to `dfrobust reproduce`")
    p.add_argument("--json", action="store_true", help="print the stage rows as JSON (stage, state, seconds, output) for scripts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per stage: state, seconds, output (for a ``--seeds`` folder, per seed)."""
    import json

    from dfrobust.pipeline import seed_folder
    from dfrobust.report.seeds_report import read_seeds

    seeds = read_seeds(args.run)
    if seeds is None:
        record = _record(args.run)
        print(json.dumps(record, indent=2) if args.json else _lines(record))
        return 0
    records = []  # a `reproduce --seeds` folder: each seed's run in turn
    for seed in seeds["seeds"]:
        folder = seed_folder(args.run, seed)
        records.append({"seed": seed, **(_record(folder) if (folder / "plan.json").is_file() else {"run": str(folder), "started": False})})
    if args.json:
        print(json.dumps({"run": str(args.run), "seeds": records}, indent=2))
        return 0
    for rec in records:
        print(f"seed {rec['seed']} ({rec['run']}):\n" + (_lines(rec) if "stages" in rec else "  not started"))
    print(f"combined report over the seeds: {args.run}/report/report.html (`dfrobust report {args.run}` rewrites it)")
    return 0


def _record(run_dir: Any) -> dict[str, Any]:
    """A run's stage rows (stage, state, seconds, output) with the counts."""
    from dfrobust.pipeline import stored_stages
    from dfrobust.stages import StageRunner

    rows = StageRunner(run_dir, log=lambda s: None).table(stored_stages(run_dir))
    return {"run": str(run_dir), "done": sum(r["state"] == "done" for r in rows), "total": len(rows), "stages": rows}


def _lines(record: dict[str, Any]) -> str:
    """One line per stage and the count, as ``status`` prints them."""
    from pathlib import Path

    rows = record["stages"]
    width = max(len(r["stage"]) for r in rows)
    out = []
    for r in rows:
        secs = f"{r['seconds']:8.1f} s" if r["seconds"] is not None else " " * 10
        out.append(f"{r['stage']:<{width}}  {r['state']:<8} {secs}  {r['output']}")
    done = record["done"]
    out.append(
        f"{done}/{len(rows)} stages done" + ("" if done < len(rows) else f"; report: {Path(record['run']) / 'report' / 'report.html'}")
    )
    return "\n".join(out)
