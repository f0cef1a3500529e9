"""Reading a run folder for the report: plan.json, config.json and what each stage wrote, into a :class:`CollectedRun`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfrobust.evaluate.robustness import Budget, attack_budget
from dfrobust.report.collected import CollectedRun, CsvRow, DipStudy, Samples
from dfrobust.utils.io import read_csv, read_json, read_record
from dfrobust.utils.runfolder import CONFIG_FILE, read_plan, resolve, stage_records


def collect(run_dir: Path) -> CollectedRun:
    """Everything the report shows, read from the run folder's ``plan.json`` and stage outputs."""
    plan = read_plan(run_dir)
    stored = read_json(run_dir / CONFIG_FILE)
    models: dict[str, dict[str, Any]] = {}
    for role in plan["roles"]:
        side = resolve(run_dir, role.get("sidecar") or str(Path(role["model"]).with_suffix(".json")))
        if side.is_file():
            models[role["name"]] = read_json(side)
    rows: list[CsvRow] = []
    skipped: list[CsvRow] = []
    attack_dirs: dict[tuple[str, str], Path] = {}
    budgets: dict[str, Budget] = {}
    for a in plan["attacks"]:
        folder = resolve(run_dir, a["dir"])
        if (folder / "results.csv").is_file():
            attack_dirs[(a["attack"], a["source"])] = folder
            for r in read_csv(folder / "results.csv"):
                # an image a survivors-only attack skipped (fooled earlier in its chain) has no verdict of its own:
                # robust accuracy and the masking checks read it, every table of rates reads the attacked rows
                (skipped if r.get("skipped") else rows).append(r)
            summary = read_record(folder / "summary.json") if (folder / "summary.json").is_file() else {}
            settings = summary.get("attack") or {}
            if settings.get("label"):  # the radius each result label was crafted at (None: a minimal-norm attack)
                budgets[settings["label"]] = attack_budget(settings)
    from dfrobust.report.adaptive import read_adaptive, read_curves

    curves, curve_warnings = read_curves({k: resolve(run_dir, v) for k, v in (plan.get("curves") or {}).items()})
    return CollectedRun(
        run_dir=run_dir,
        stored=stored,
        cfg=stored["config"],
        plan=plan,
        roles=plan["roles"],
        stages=stage_records(run_dir, [s["name"] for s in plan["stages"]]),
        manifest=plan.get("data") or None,
        models=models,
        attack_rows=rows,
        skipped_rows=skipped,
        attack_dirs=attack_dirs,
        attack_budgets=budgets,
        samples=_samples(run_dir, plan),
        certify=_certify(run_dir, plan),
        adaptive=read_adaptive({k: resolve(run_dir, v) for k, v in (plan.get("adaptive") or {}).items()}),
        curves=curves,
        curve_warnings=curve_warnings,
        dip=_dip(run_dir, plan),
    )


def _samples(run_dir: Path, plan: dict[str, Any]) -> Samples | None:
    """The samples stage's ``samples.json`` (``None`` before the stage ran)."""
    folder = resolve(run_dir, plan["samples"]) if plan.get("samples") else None
    if folder is None or not (folder / "samples.json").is_file():
        return None
    record = read_json(folder / "samples.json")
    return Samples(folder, record.get("models", []), record["rows"])


def _certify(run_dir: Path, plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each certified model's ``summary.json`` that exists, by model."""
    out = {}
    for name, folder in (plan.get("certify") or {}).items():
        summary = resolve(run_dir, folder) / "summary.json"
        if summary.is_file():
            out[name] = read_record(summary)
    return out


def _dip(run_dir: Path, plan: dict[str, Any]) -> DipStudy | None:
    """The DIP study's summary and tables (``None`` until its ``summary.json`` exists)."""
    folder = resolve(run_dir, plan["dip"]["dir"]) if plan.get("dip") else None
    if folder is None or not (folder / "summary.json").is_file():
        return None
    return DipStudy(
        dir=folder,
        role=plan["dip"],
        summary=read_record(folder / "summary.json"),
        table3=read_csv(folder / "table3.csv"),
        table4=read_csv(folder / "table4.csv"),
        sweep=read_csv(folder / "sweep.csv") if (folder / "sweep.csv").is_file() else [],
    )
