"""`dfrobust purify`: placeholder until issue 5 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `purify` subcommand."""
    parser = add_command(subparsers, "purify", "Deep Image Prior purification study (not built yet)", ["dfrobust purify --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust purify` is not built yet (issue 5)")
