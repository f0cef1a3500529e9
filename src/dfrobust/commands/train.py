"""`dfrobust train`: placeholder until issue 3 lands (replace this module)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command
from dfrobust.errors import DfrobustError


def register(subparsers: Any) -> None:
    """Add the `train` subcommand."""
    parser = add_command(subparsers, "train", "Train a detector (not built yet)", ["dfrobust train --help"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Not built yet."""
    raise DfrobustError("`dfrobust train` is not built yet (issue 3)")
