"""`dfrobust attack`: placeholder until issue 4 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `attack` subcommand."""
    parser = add_command(subparsers, "attack", "Attack detectors (FGSM, CW-L2, PGD), whitebox and blackbox (not built yet)", ["dfrobust attack --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust attack` is not built yet (issue 4)")
