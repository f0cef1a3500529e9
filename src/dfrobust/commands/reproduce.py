"""`dfrobust reproduce`: placeholder until issue 6 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `reproduce` subcommand."""
    parser = add_command(subparsers, "reproduce", "Reproduce the whole paper in one resumable command (not built yet)", ["dfrobust reproduce --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust reproduce` is not built yet (issue 6)")
