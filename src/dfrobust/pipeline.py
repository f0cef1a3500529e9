"""The study as cached, resumable stages on one run folder: the planner loop, the scheduler, the entry points.

``reproduce`` plans the study from its config (a preset plus overrides): every stage kind of
:mod:`dfrobust.kinds` (one module each, found by package discovery and the entry-point group
``dfrobust.stage_kinds``) plans its stages, in the order of the kinds' declared ``needs``. It
writes ``RUN/config.json`` and ``RUN/plan.json`` and runs the stages through
:class:`dfrobust.stages.StageRunner`, one after another or on several devices at once
(:func:`run_on_devices`), then writes ``RUN/report/`` from the stage outputs and plan.json alone.
`dfrobust status --run RUN` lists the stages of a run; ``docs/architecture.md`` lists the kinds.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.kinds.adaptive import fooled_fakes
from dfrobust.kinds.attack import attack_plan
from dfrobust.kinds.base import AttackRun, Plan, ordered_kinds
from dfrobust.kinds.data import SWAP_KNOBS, data_summary
from dfrobust.stages import Stage, StageRunner, force_matches
from dfrobust.utils.io import read_record, write_json
from dfrobust.utils.names import check_name
from dfrobust.utils.runfolder import CONFIG_FILE, PLAN_FILE, read_plan

log = logging.getLogger(__name__)
#: torchrun's variables, which a stage started by the --devices scheduler must not inherit.
TORCHRUN_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)
#: What earlier callers imported from here (the stage kinds own them now).
__all__ = [
    "SWAP_KNOBS",
    "AttackRun",
    "Plan",
    "attack_plan",
    "fooled_fakes",
    "plan_study",
    "reproduce",
    "reproduce_seeds",
    "run_stage",
    "run_on_devices",
    "load_run_config",
    "stored_stages",
]


def plan_study(cfg: dict[str, Any], run_dir: Path, data_arg: Path | None = None, device: str = "auto") -> Plan:
    """Every stage of the study: each registered stage kind plans its stages, in the order their ``needs`` give."""
    plan = Plan(Path(run_dir), Path(data_arg) if data_arg is not None else None)
    for kind in ordered_kinds():
        plan.kinds.append(kind)
        plan.stages += kind.plan(plan, cfg, device)
    for role in plan.roles:  # a role's name becomes its model file and its folders: never a path
        check_name(role.name, "detector name")
    return plan


def reproduce(
    cfg: dict[str, Any],
    run_dir: str | Path,
    data_arg: str | Path | None = None,
    device: str = "auto",
    force: set[str] | None = None,
    devices: list[str] | None = None,
) -> Path:
    """Run (or resume) the whole study in ``run_dir`` and write its report; returns the report folder.

    With several ``devices`` (``["cuda:0", "cuda:1"]``), stages whose inputs are ready run at the
    same time, one per device (:func:`run_on_devices`); otherwise one after another on ``device``.
    """
    from dfrobust.report.render import write_report
    from dfrobust.utils.runtime import resolve_device, versions

    from dfrobust.utils import distributed

    run_dir = Path(run_dir)
    devices = list(devices or [device])
    for d in devices:
        resolve_device(d)  # fail early on a missing GPU
    ctx = distributed.setup(devices[0])  # under torchrun: every stage is shared by all ranks
    if ctx.group and len(devices) > 1:
        raise DfrobustError("--devices and torchrun do not mix: under torchrun every rank already has its own device")
    plan = plan_study(cfg, run_dir, Path(data_arg) if data_arg else None, devices[0])
    check_force(force or set(), plan.stages, run_dir)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            run_dir / CONFIG_FILE,
            {
                "config": cfg,
                "data_arg": str(data_arg) if data_arg else None,
                "device": device,
                "devices": devices,
                "world_size": ctx.world_size,
                "versions": versions(),
            },
        )
        write_json(run_dir / PLAN_FILE, plan.record(cfg, data_summary(plan)))
    runner = StageRunner(run_dir, force=force)
    t0 = time.perf_counter()
    runner.run(plan.stages[0])  # the data: every other stage reads it
    if ctx.is_main:
        write_json(run_dir / PLAN_FILE, plan.record(cfg, data_summary(plan)))  # its size and counts exist now
    if len(devices) == 1:
        for stage in plan.stages[1:]:
            runner.run(stage)
    else:
        run_on_devices(run_dir, plan, devices, force or set())
    report_dir = run_dir / "report"
    if ctx.is_main:
        report_dir = write_report(run_dir)
    log.info(f"done in {time.perf_counter() - t0:.0f} s; report: {report_dir / 'report.html'}")
    return report_dir


def seed_folder(run_dir: str | Path, seed: int) -> Path:
    """The run folder of one seed of a ``--seeds`` run: ``RUN/seed-N``."""
    return Path(run_dir) / f"seed-{int(seed)}"


def check_seeds(seeds: list[int]) -> list[int]:
    """``seeds`` as a list of distinct non-negative integers, or a one-line error."""
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise DfrobustError(f"--seeds: a seed is a non-negative integer, not {s!r}")
        if s in out:
            raise DfrobustError(f"--seeds: seed {s} is given twice; the seeds must be distinct")
        out.append(s)
    if not out:
        raise DfrobustError("--seeds: give at least one seed")
    return out


def reproduce_seeds(
    configs: Mapping[int, dict[str, Any]],
    run_dir: str | Path,
    data_arg: str | Path | None = None,
    device: str = "auto",
    force: set[str] | None = None,
    devices: list[str] | None = None,
    each: Callable[[Path], AbstractContextManager[Any]] | None = None,
) -> Path:
    """The whole study once per seed, each in its own run folder ``RUN/seed-N``, then the combined report; returns its folder.

    ``configs`` maps each seed to its study config (whose ``run.seed`` and ``run.seeds`` it sets here). ``RUN/seeds.json``
    records the seeds before the first one runs, so an interrupted call resumes (``reproduce --run RUN``:
    finished stages of every seed are skipped). ``each(seed_folder)``, if given, wraps each seed's run
    (the command's lock and run.log). ``RUN/report/`` gets ``results.json`` with ``seeds``, ``per_seed``
    and the spread of each headline number over the seeds, read from each seed's own report.
    """
    from dfrobust.report.seeds_report import SEEDS_FILE, write_seeds_report
    from dfrobust.utils import distributed

    run_dir = Path(run_dir)
    seeds = check_seeds(list(configs))
    main_rank = distributed.env_context().rank == 0
    if main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / SEEDS_FILE, {"seeds": seeds, "runs": {str(s): seed_folder(run_dir, s).name for s in seeds}})
    for seed in seeds:
        cfg = copy.deepcopy(configs[seed])
        cfg["run"]["seed"] = seed
        cfg["run"]["seeds"] = list(seeds)  # the seeds of the --seeds run it belongs to (--seeds overrides the preset's)
        kept = [o for o in cfg["run"].get("overrides", []) if o.partition("=")[0].strip() != "run.seed"]
        cfg["run"]["overrides"] = [*kept, f"run.seed={seed}"]  # the seed's own record says which seed it is
        folder = seed_folder(run_dir, seed)
        log.info(f"seed {seed}: run {folder}")
        with each(folder) if each is not None else contextlib.nullcontext():
            reproduce(cfg, folder, data_arg=data_arg, device=device, force=force, devices=devices)
    report_dir = run_dir / "report"
    if main_rank:
        report_dir = write_seeds_report(run_dir)
    log.info(f"seeds {seeds} done; combined report: {report_dir / 'report.html'}")
    return report_dir


def check_force(force: set[str], stages: list[Stage], run_dir: Path) -> None:
    """Every ``--force`` value names a stage of the plan or a group of them (``attack``, ``attack/cw``); else a one-line error."""
    for f in sorted(force):
        if not any(force_matches(s.name, f) for s in stages):
            raise DfrobustError(f"--force {f!r} matches no stage of this run; `dfrobust status --run {run_dir}` lists them")


def run_on_devices(run_dir: Path, plan: Plan, devices: list[str], force: set[str]) -> None:
    """Run the plan's stages after the data, each as soon as its inputs are done, one at a time per device slot.

    Each stage runs in its own process (``dfrobust reproduce --run RUN --stage NAME --device D``), so
    stages never share a random generator or a CUDA context; a device listed twice runs two stages.
    The first failure stops new starts and is raised once the running stages finish.
    """
    import os
    import subprocess
    import sys
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    def run_one(name: str, device: str) -> None:
        cmd = [sys.executable, "-m", "dfrobust", "reproduce", "--run", str(run_dir), "--stage", name, "--device", device]
        cmd += [a for f in sorted(force) for a in ("--force", f)]
        # a stage is one process of its own, never a rank of a torchrun group this process may belong to
        env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
        if subprocess.run(cmd, env=env).returncode != 0:
            raise DfrobustError(f"stage {name} failed on {device} (its error is above); rerun the same command to resume")

    by_name = {s.name: s for s in plan.stages}
    pending = [s.name for s in plan.stages[1:]]
    done = {plan.stages[0].name}
    free = list(range(len(devices)))
    running: dict[Future, tuple[str, int]] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        while (pending and error is None) or running:
            for name in list(pending):
                if not free or error is not None:
                    break
                if all(d in done for d in by_name[name].deps):
                    slot = free.pop(0)
                    pending.remove(name)
                    log.info(f"[start] {name} on {devices[slot]}")
                    running[pool.submit(run_one, name, devices[slot])] = (name, slot)
            if not running:
                if pending and error is None:
                    raise RuntimeError(f"stages {pending} wait for inputs that no stage makes")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                name, slot = running.pop(fut)
                free.append(slot)
                if fut.exception() is not None:
                    error = error or fut.exception()
                else:
                    done.add(name)
    if error is not None:
        raise error


def run_stage(run_dir: str | Path, name: str, device: str, force: set[str] | None = None) -> bool:
    """Run one stage of an existing run (what :func:`run_on_devices` starts per stage); ``True`` if it ran."""
    run_dir = Path(run_dir)
    stored = load_run_config(run_dir)
    data_arg = stored.get("data_arg")
    plan = plan_study(stored["config"], run_dir, Path(data_arg) if data_arg else None, device)
    stage = next((s for s in plan.stages if s.name == name), None)
    if stage is None:
        raise DfrobustError(f"no stage {name!r} in {run_dir}; `dfrobust status --run {run_dir}` lists them")
    return StageRunner(run_dir, force=force).run(stage)


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` a ``reproduce`` call wrote in ``run_dir``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DfrobustError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); start one with `dfrobust reproduce --run {run_dir}`")
    return read_record(path)


def stored_stages(run_dir: str | Path) -> list[Stage]:
    """The stages of a run as its ``plan.json`` recorded them (for ``status``; they cannot run)."""
    run_dir = Path(run_dir)
    return [Stage.from_record(rec, run_dir) for rec in read_plan(run_dir)["stages"]]
