"""The files of a run folder that the pipeline writes and the report and status read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.utils.io import read_record

CONFIG_FILE = "config.json"
PLAN_FILE = "plan.json"
STAGES_DIR = ".stages"


def read_plan(run_dir: str | Path) -> dict[str, Any]:
    """``RUN/plan.json``: the roles, model paths, attack and defense folders and stages of a run."""
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        raise DfrobustError(f"{run_dir} is not a run folder (no {PLAN_FILE}); start one with `dfrobust reproduce --run {run_dir}`")
    return read_record(path)


def resolve(run_dir: str | Path, stored: str) -> Path:
    """A path stored in ``plan.json``: relative ones are relative to the run folder."""
    path = Path(stored)
    return path if path.is_absolute() else Path(run_dir) / path


def stage_record_path(run_dir: str | Path, name: str) -> Path:
    """Where the bookkeeping record of stage ``name`` lives."""
    return Path(run_dir) / STAGES_DIR / f"{name.replace('/', '__')}.json"


def stage_records(run_dir: str | Path, names: list[str]) -> list[dict[str, Any]]:
    """The records of the named stages that have one, in the given order (stages no longer planned are left out)."""
    out = []
    for name in names:
        path = stage_record_path(run_dir, name)
        if path.is_file():
            out.append(read_record(path))
    return out
