"""Style is a checked rule: ``ruff check`` (lint) and ``ruff format --check`` (layout) pass on the tree.

The configuration is ``[tool.ruff]`` in pyproject.toml; ``ruff format src tests benchmarks scripts``
fixes the layout, ``ruff check --fix`` what the linter can fix itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "benchmarks", "scripts"]


def _ruff() -> list[str]:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).is_file():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return [exe]


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(args: list[str]) -> None:
    paths = [p for p in PATHS if (ROOT / p).is_dir()]
    proc = subprocess.run([*_ruff(), *args, *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff {' '.join(args)} found problems:\n{proc.stdout}{proc.stderr}"
