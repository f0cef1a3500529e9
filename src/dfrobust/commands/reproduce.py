"""``dfrobust reproduce``: the whole study of the paper in one resumable command."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg


#: Position of this command in ``dfrobust --help``.
ORDER = 70


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` subcommand."""
    from dfrobust.config import available_presets

    p = add_command(
        subparsers,
        "reproduce",
        "Reproduce the whole paper (data, 7 detectors, FGSM/CW whitebox+blackbox, DIP, report) in one resumable command",
        [
            "dfrobust reproduce --preset quick --run runs/quick",
            "dfrobust reproduce --preset cpu --data ~/faces --run runs/mine      # your own real/ + fake/ folder",
            "dfrobust reproduce --preset paper --data ~/celeba-vs-gan --device cuda --run runs/paper",
            "dfrobust reproduce --preset quick --set attack.cw.max_steps=200 --set data.size=48",
            "dfrobust reproduce --run runs/quick --force attack/cw     # redo the CW attacks and what depends on them",
        ],
        description=(
            "Runs every stage of the paper's study on one run folder and writes RUN/report/report.html.\n"
            "Finished stages are skipped on rerun, an interrupted run resumes where it stopped, and changing\n"
            "a setting reruns only the stages that depend on it. `dfrobust status --run RUN` shows progress."
        ),
    )
    p.add_argument("--preset", default="quick", help=f"one of {available_presets()} or a .toml file (default: quick)")
    p.add_argument("--data", default=None, help="a dataset folder, or a folder of real/ and fake/ images to import (default: synthetic faces)")
    p.add_argument("--run", default=None, help="run folder (default: runs/<preset>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, e.g. attack.cw.max_steps=200 (repeatable)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="rerun a stage or a group (data, train, train/vgg16, attack, attack/cw, dip) and what depends on it")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan and run the study."""
    from pathlib import Path

    from dfrobust.config import study_config
    from dfrobust.pipeline import reproduce

    cfg = study_config(args.preset, args.overrides)
    run_dir = Path(args.run or f"runs/{cfg['run']['preset']}")
    reproduce(cfg, run_dir, data_arg=args.data, device=args.device, force=set(args.force))
    return 0
