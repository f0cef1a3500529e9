"""`dfrobust data`: placeholder until issue 2 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `data` subcommand."""
    parser = add_command(subparsers, "data", "Make datasets (synthetic faces, face swap on photos, folder import) (not built yet)", ["dfrobust data --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust data` is not built yet (issue 2)")
