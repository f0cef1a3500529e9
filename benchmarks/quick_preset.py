"""Wall time of the quick preset, from scratch, on this machine (target: <= 10 minutes on 2 CPU cores).

Usage: .venv/bin/python benchmarks/quick_preset.py [--run DIR] [--preset quick]

Runs `dfrobust reproduce` into a fresh run folder and prints one JSON line per stage and a
total line, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from dfrobust.config import study_config
from dfrobust.pipeline import reproduce
from dfrobust.utils.io import read_json

#: Wall-time targets on a 2-core CPU: the quick preset's from its issue, "about an hour" for cpu.
TARGET_SECONDS = {"quick": 600, "cpu": 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="run folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.run is not None and args.run.exists():  # a folder this script did not make is never deleted
        parser.error(f"{args.run} exists; give a new --run folder (the timing is from scratch)")
    run = args.run or Path(tempfile.mkdtemp(prefix="dfrobust-bench-")) / "run"
    t0 = time.perf_counter()
    reproduce(study_config(args.preset), run, device=args.device)
    total = time.perf_counter() - t0
    for rec in sorted((read_json(p) for p in (run / ".stages").glob("*.json")), key=lambda r: r["finished_at"]):
        print(json.dumps({"stage": rec["name"], "seconds": rec["seconds"]}))
    target = TARGET_SECONDS.get(args.preset)
    print(
        json.dumps(
            {
                "preset": args.preset,
                "wall_seconds": round(total, 1),
                "target_seconds": target,
                "within_target": None if target is None else total <= target,
                "cpus": os.cpu_count(),
                "run": str(run),
            }
        )
    )
    if args.run is None:
        shutil.rmtree(run.parent)


if __name__ == "__main__":
    main()
