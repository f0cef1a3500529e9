"""Shared pieces of the command-line interface: subcommand creation and common options."""

from __future__ import annotations

import argparse
from typing import Any

RawHelp = argparse.RawDescriptionHelpFormatter


def add_command(
    subparsers: Any,
    name: str,
    help: str,
    examples: list[str],
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` ends with worked examples."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=lambda prog: RawHelp(prog, max_help_position=32),
    )
    add_log_args(parser, here=True)
    return parser


def add_log_args(parser: argparse.ArgumentParser, here: bool = False) -> None:
    """``--quiet`` / ``--verbose``; ``here``: on a subcommand, where they must not reset the top-level values."""
    default = argparse.SUPPRESS if here else False
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="only warnings and errors (no progress)")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="debug messages too")


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda[:N]``."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")


def add_seed_arg(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """``--seed N``."""
    parser.add_argument("--seed", type=int, default=default, help=f"random seed (default: {default})")


def add_shard_args(parser: argparse.ArgumentParser) -> None:
    """``--rank R --world-size N``: run one shard as a separate command (without them: torchrun's, or one process)."""
    parser.add_argument(
        "--rank",
        type=int,
        default=None,
        metavar="R",
        help="this command's shard, 0..N-1, when shards run as separate commands (default: torchrun's $RANK, else 0)",
    )
    parser.add_argument(
        "--world-size", type=int, default=None, metavar="N", help="number of shards (default: torchrun's $WORLD_SIZE, else 1)"
    )


def is_main_process() -> bool:
    """Whether this process prints and draws: rank 0 under torchrun, always without it."""
    from dfrobust.utils.distributed import env_context

    return env_context().is_main
