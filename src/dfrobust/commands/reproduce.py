"""``dfrobust reproduce``: the whole study of the paper in one resumable command."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg
from dfrobust.errors import DfrobustError
from dfrobust.utils.numerics import pin_from_config

log = logging.getLogger(__name__)
#: ``--force preset``: confirms switching an existing run to another preset.
FORCE_PRESET = "preset"
#: Files this command itself may put in a run folder before the pipeline records it.
OWN_FILES = {".lock", "run.log"}


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
            "dfrobust reproduce --preset quick --detector cards/a.toml --detector cards/b.toml --data ~/faces --run runs/mine",
            "dfrobust reproduce --run runs/quick --preset cpu --force preset   # switch a run to another preset",
            "dfrobust reproduce --preset tiny --seeds 0 1 2 --run runs/tiny-seeds   # one run per seed, then their spread",
        ],
        description=(
            "Runs every stage of the paper's study on one run folder and writes RUN/report/report.html.\n"
            "Finished stages are skipped on rerun, an interrupted run resumes where it stopped, and changing\n"
            "a setting reruns only the stages that depend on it. `dfrobust status --run RUN` shows progress.\n"
            "An existing run keeps the preset, settings and --data it was made with unless they are given;\n"
            "another preset than its own needs --force preset. The run folder is locked while this runs,\n"
            "and RUN/run.log records the log.\n"
            "For exploration: --preset tiny (about a minute) or quick (about 10 minutes on 2 CPU cores); paper runs the\n"
            "paper's full budgets (a GPU and real data). Each attack logs its budget before it starts."
        ),
    )
    p.add_argument(
        "--preset", default=None, help=f"one of {available_presets()} or a .toml file (default: an existing run's own preset, else quick)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="a dataset folder, or a folder of real/ and fake/ (or 0_real/ and 1_fake/) images to import; with --detector any "
        "folder layout or .csv/.json list, read in place (default: synthetic faces)",
    )
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        default=None,
        help="run folder (default: runs/<preset>, with --seeds runs/<preset>-seeds); under torchrun write --run-dir "
        "(torchrun takes --run for its own --run-path)",
    )
    p.add_argument(
        "--detector",
        action="append",
        default=[],
        metavar="CARD",
        help="red-team your own detector (a detector card; repeatable): no training, every attack whitebox "
        "on each and blackbox from each to every other, the DIP study on the first, the same report",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset value, e.g. attack.cw.max_steps=200 (repeatable)",
    )
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        help="rerun a stage or a group (data, train, train/vgg16, attack, attack/cw, dip) and what depends on it; "
        f"'{FORCE_PRESET}' confirms switching an existing run to another --preset",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=_seed,
        default=None,
        metavar="SEED",
        help="run the whole study once per seed (distinct non-negative integers), each in RUN/seed-N, then write "
        "RUN/report/ with each seed's headline numbers and their spread (mean, sd, min-max); not with --set run.seed "
        "(default: the preset's run.seeds when it names two or more, else its run.seed, one run; an existing --seeds run "
        "keeps its recorded seeds)",
    )
    add_device_arg(p)
    p.add_argument(
        "--devices",
        default=None,
        metavar="LIST",
        help="run independent stages at the same time, one per device, e.g. cuda:0,cuda:1 (default: --device only)",
    )
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: run one stage of an existing run (--devices)
    p.set_defaults(func=run)


def _seed(text: str) -> int:
    """One ``--seeds`` value: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a non-negative integer, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is a non-negative integer, not {text!r}")
    return value


def resolve_run(args: argparse.Namespace) -> tuple[Path, dict[str, Any], str | None]:
    """The run folder, study config and ``--data`` of this call.

    A new run: ``--preset`` (default quick) with ``--set``. An existing run (its ``config.json``):
    without ``--preset`` its recorded config, changed by any ``--set``, and its recorded
    ``--data`` when none is given; with ``--preset`` that preset, which must be the run's own
    unless ``--force preset`` confirms the switch. A non-empty folder that is not a run is refused.
    """
    from dfrobust.attacks.base import ATTACKS, attack_section_defaults
    from dfrobust.config import apply_overrides, study_config
    from dfrobust.pipeline import CONFIG_FILE
    from dfrobust.utils.io import read_record

    run_dir = Path(args.run or f"runs/{Path(args.preset or 'quick').stem}")
    if run_dir.exists() and not run_dir.is_dir():
        raise DfrobustError(f"--run {run_dir} is a file; give a run folder")
    record_path = run_dir / CONFIG_FILE
    if not record_path.is_file():
        if run_dir.is_dir() and any(p.name not in OWN_FILES for p in run_dir.iterdir()):
            raise DfrobustError(
                f"{run_dir} is not empty and is not a dfrobust run folder (no {CONFIG_FILE}); give --run a new or empty folder"
            )
        return run_dir, study_config(args.preset or "quick", args.overrides, attack_section_defaults, ATTACKS.canonical), args.data
    stored = read_record(record_path)
    try:
        recorded_cfg, recorded = stored["config"], stored["config"]["run"]["preset"]
    except (KeyError, TypeError):
        raise DfrobustError(f"{record_path} does not record a study config; restore it or start a new --run") from None
    data = args.data if args.data is not None else stored.get("data_arg")
    if args.data is None and data:
        log.info(f"using --data {data}, as recorded in {record_path}")
    if args.preset is None:
        cfg = apply_overrides(recorded_cfg, args.overrides, attack_section_defaults, ATTACKS.canonical)
        merged = {o.partition("=")[0].strip(): o for o in [*recorded_cfg["run"].get("overrides", []), *args.overrides]}
        cfg["run"]["overrides"] = list(merged.values())  # one entry per key, the latest value
        log.info(
            f"continuing run {run_dir} with its recorded preset {recorded}"
            + (f" and --set {' '.join(args.overrides)}" if args.overrides else "")
        )
        return run_dir, cfg, data
    if Path(args.preset).stem != recorded and FORCE_PRESET not in args.force:
        raise DfrobustError(
            f"{run_dir} was made with preset {recorded}, not {args.preset}; rerun without --preset to continue it, give another "
            f"--run, or add --force {FORCE_PRESET} to switch it (its stages rerun and their results are replaced)"
        )
    return run_dir, study_config(args.preset, args.overrides, attack_section_defaults, ATTACKS.canonical), data


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[Path]:
    """Append every dfrobust log record (INFO and up) to ``RUN/run.log`` for the block."""
    path = run_dir / "run.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("dfrobust")
    old_level = root.level
    if not root.level or root.level > logging.INFO:
        root.setLevel(logging.INFO)  # the console handler keeps its own level (--quiet)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def add_detectors(cfg: dict[str, Any], detector: list[str]) -> None:
    """Put the ``--detector`` cards in ``cfg`` (each checked, one-line errors, before any work)."""
    if not detector:
        return
    from dfrobust.models.loading import model_display_name

    cards = [str(Path(c).resolve()) for c in detector]
    names = [model_display_name(c) for c in cards]
    if len(set(names)) < len(names):
        raise DfrobustError(f"two detector cards share a name ({names}); set `name` in one of them")
    cfg["run"]["detectors"] = cards


def seeds_run_dir(args: argparse.Namespace) -> Path:
    """``--run``, else ``runs/<preset>-seeds`` with ``--seeds`` (a single run's default folder stays one run's), else
    ``runs/<preset>`` (a preset whose ``run.seeds`` names several seeds runs them there)."""
    return Path(args.run or f"runs/{Path(args.preset or 'quick').stem}" + ("-seeds" if args.seeds else ""))


def _sets(overrides: list[str], key: str) -> bool:
    """Whether a ``--set`` sets the dotted ``key``."""
    from dfrobust.config import parse_override

    return any(parse_override(o)[0] == key.split(".") for o in overrides)


def config_seeds(args: argparse.Namespace) -> list[int] | None:
    """The config's ``run.seeds`` (``--preset``, else the default preset, with ``--set``) when it names two or more seeds.

    ``None``: one run. A folder that is already a run of one seed stays one (a seed of a ``--seeds`` run
    records that run's seeds in its own config) unless ``--preset`` or ``--set run.seeds`` asks for
    several seeds, which is refused there. The config is checked whole here, so a bad list is a one-line error.
    """
    from dfrobust.attacks.base import attack_param_checks
    from dfrobust.config_checks import validate_study_config
    from dfrobust.pipeline import CONFIG_FILE

    run_dir = seeds_run_dir(args)
    one_run = (run_dir / CONFIG_FILE).is_file()
    if one_run and args.preset is None and not _sets(args.overrides, "run.seeds"):
        return None
    _, cfg, _ = resolve_run(args)
    validate_study_config(cfg, attack_param_checks())
    seeds = list(cfg["run"].get("seeds") or [])
    if len(seeds) < 2:
        return None
    source = f"preset {cfg['run']['preset']} runs seeds {seeds} (run.seeds)"
    if one_run:
        raise DfrobustError(f"{run_dir} is a run of one seed and {source}; continue it with --set 'run.seeds=[]', or give a new --run")
    if _sets(args.overrides, "run.seed"):
        raise DfrobustError(
            f"{source}, each its own run.seed; drop --set run.seed=..., or give --seeds (or --set 'run.seeds=[]' for one run)"
        )
    log.info(f"{source}: one run per seed in {run_dir}/seed-N (--seeds overrides the list)")
    return seeds


def resolve_seeds(args: argparse.Namespace) -> list[int] | None:
    """The seeds of this call: ``--seeds``, else those an existing ``--seeds`` run folder records, else the config's
    ``run.seeds`` when it names two or more (:func:`config_seeds`); ``None``: one run.

    ``--seeds`` must be distinct, never with ``--set run.seed=...``, and its folder new, empty or a ``--seeds`` run.
    """
    from dfrobust.pipeline import CONFIG_FILE, check_seeds
    from dfrobust.report.seeds_report import SEEDS_FILE, read_seeds

    run_dir = seeds_run_dir(args)
    recorded = read_seeds(run_dir) if run_dir.is_dir() else None
    if args.seeds is None and recorded is None:
        seeds = config_seeds(args)
        if seeds is not None and run_dir.is_dir() and any(p.name not in OWN_FILES for p in run_dir.iterdir()):
            raise DfrobustError(f"{run_dir} is not empty and is not a dfrobust run folder; give --run a new or empty folder")
        return seeds
    if _sets(args.overrides, "run.seed"):
        raise DfrobustError("--seeds sets run.seed of each seed's run; drop --set run.seed=..." if args.seeds else
                            f"{run_dir} is a --seeds run (its {SEEDS_FILE}); give --seeds instead of --set run.seed=...")  # fmt: skip
    if args.seeds is None:
        log.info(f"continuing the --seeds run {run_dir} with its recorded seeds {recorded['seeds']}")
        return check_seeds(list(recorded["seeds"]))
    seeds = check_seeds(list(args.seeds))
    if (run_dir / CONFIG_FILE).is_file():
        raise DfrobustError(f"{run_dir} is a run of one seed; give --seeds a new or empty --run folder")
    if recorded is None and run_dir.is_dir() and any(p.name not in OWN_FILES for p in run_dir.iterdir()):
        raise DfrobustError(f"{run_dir} is not empty and is not a dfrobust run folder; give --run a new or empty folder")
    return seeds


def run_seeds(args: argparse.Namespace, seeds: list[int]) -> int:
    """``reproduce --seeds``: resolve and check every seed's config, then run them one after another (RUN and each seed locked)."""
    from dfrobust.attacks.base import attack_param_checks
    from dfrobust.config_checks import validate_study_config
    from dfrobust.pipeline import CONFIG_FILE, reproduce_seeds, seed_folder
    from dfrobust.report.seeds_report import SEEDS_FILE
    from dfrobust.utils.distributed import env_context
    from dfrobust.utils.runlock import run_lock

    run_dir = seeds_run_dir(args)
    existing = [seed_folder(run_dir, s) for s in seeds if (seed_folder(run_dir, s) / CONFIG_FILE).is_file()]
    if args.preset is None and not existing and (run_dir / SEEDS_FILE).is_file():  # stopped before its first seed's record
        raise DfrobustError(f"no seed of {run_dir} has started yet, so none records its preset; give --preset (and --set) again")
    configs, datas = {}, set()
    for seed in seeds:
        folder = seed_folder(run_dir, seed)
        # a seed added to a --seeds run without --preset takes the config of a seed already there
        template = folder if folder in existing or args.preset is not None or not existing else existing[0]
        _, cfg, data = resolve_run(argparse.Namespace(**{**vars(args), "run": str(template)}))
        add_detectors(cfg, args.detector)
        validate_study_config(cfg, attack_param_checks())
        configs[seed] = cfg
        datas.add(data)
    if len(datas - {None}) > 1:
        raise DfrobustError(f"the seeds of {run_dir} record different --data ({sorted(map(str, datas - {None}))}); give --data")
    levels = {str(c["run"].get("pin_isa") or "none") for c in configs.values()}
    if len(levels) > 1:
        raise DfrobustError(f"the seeds of {run_dir} record different run.pin_isa ({sorted(levels)}); one process pins one level")
    pin_from_config(next(iter(configs.values()))["run"])  # before any torch work
    data = next(iter(datas - {None}), None)
    main_rank = env_context().rank == 0

    @contextlib.contextmanager
    def each(folder: Path) -> Iterator[None]:
        with run_lock(folder) if main_rank else contextlib.nullcontext(), run_log(folder) if main_rank else contextlib.nullcontext():
            yield

    if main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir) if main_rank else contextlib.nullcontext(), run_log(run_dir) if main_rank else contextlib.nullcontext():
        log.info(f"dfrobust reproduce: seeds {seeds}, run {run_dir}, data {data or 'synthetic'}, device {args.device}")
        devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
        force = set(args.force) - {FORCE_PRESET}
        reproduce_seeds(configs, run_dir, data_arg=data, device=args.device, force=force, devices=devices, each=each)
        log.info("reproduce finished")
    return 0


def run(args: argparse.Namespace) -> int:
    """Plan and run the study (the run folder locked, the log also in RUN/run.log)."""
    from dfrobust.attacks.base import attack_param_checks
    from dfrobust.config_checks import validate_study_config
    from dfrobust.pipeline import reproduce
    from dfrobust.utils.runlock import run_lock

    if args.stage:  # one stage for the --devices scheduler, which holds the run's lock
        from dfrobust.pipeline import run_stage

        run_dir = Path(args.run)
        with run_log(run_dir):
            run_stage(run_dir, args.stage, args.device, set(args.force) - {FORCE_PRESET})
        return 0
    seeds = resolve_seeds(args)
    if seeds is not None:
        return run_seeds(args, seeds)
    run_dir, cfg, data = resolve_run(args)
    add_detectors(cfg, args.detector)
    validate_study_config(cfg, attack_param_checks())
    pin_from_config(cfg["run"])  # [run] pin_isa: before any torch work (oneDNN, MKL and ATen read it once)
    from dfrobust.utils.distributed import env_context

    # under torchrun rank 0 holds the lock and writes run.log; the other ranks join its stages
    main_rank = env_context().rank == 0
    with run_lock(run_dir) if main_rank else contextlib.nullcontext(), run_log(run_dir) if main_rank else contextlib.nullcontext():
        log.info(f"dfrobust reproduce: preset {cfg['run']['preset']}, run {run_dir}, data {data or 'synthetic'}, device {args.device}")
        devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
        reproduce(cfg, run_dir, data_arg=data, device=args.device, force=set(args.force) - {FORCE_PRESET}, devices=devices)
        log.info("reproduce finished")
    return 0
