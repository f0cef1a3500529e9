"""`dfrobust evaluate`: placeholder until issue 3 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `evaluate` subcommand."""
    parser = add_command(subparsers, "evaluate", "Evaluate a detector (Table I metrics) (not built yet)", ["dfrobust evaluate --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust evaluate` is not built yet (issue 3)")
