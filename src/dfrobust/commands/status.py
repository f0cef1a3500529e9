"""`dfrobust status`: placeholder until issue 6 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `status` subcommand."""
    parser = add_command(subparsers, "status", "Show which stages of a run are done (not built yet)", ["dfrobust status --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust status` is not built yet (issue 6)")
