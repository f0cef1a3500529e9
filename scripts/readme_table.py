#!/usr/bin/env python3
"""Put a run's generated summary (RUN/report/summary.md) into README.md between the markers.

Usage: .venv/bin/python scripts/readme_table.py runs/quick          (between <!-- quick-run:... -->)
       .venv/bin/python scripts/readme_table.py runs/cpu cpu-run  (between <!-- cpu-run:... -->)

The README's table is therefore the tool's own output, never typed in by hand.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def main(run_dir: str, marker: str = "quick-run") -> None:
    BEGIN, END = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    summary = (Path(run_dir) / "report" / "summary.md").read_text(encoding="utf-8")
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"README.md lacks the markers {BEGIN} ... {END}")
    block = f"{BEGIN}\n{summary.strip()}\n{END}"
    readme.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S), encoding="utf-8")
    print(f"updated {readme} from {run_dir}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
