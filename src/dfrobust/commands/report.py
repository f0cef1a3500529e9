"""`dfrobust report`: placeholder until issue 6 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `report` subcommand."""
    parser = add_command(subparsers, "report", "Write the report of a run (not built yet)", ["dfrobust report --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust report` is not built yet (issue 6)")
