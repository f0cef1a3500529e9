"""Reading a run folder for the report: plan.json, config.json and what each stage wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfrobust.evaluate.robustness import attack_budget
from dfrobust.utils.io import read_csv, read_json, read_record
from dfrobust.utils.runfolder import CONFIG_FILE, read_plan, resolve, stage_records


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, read from the run folder's ``plan.json`` and stage outputs."""
    plan = read_plan(run_dir)
    stored = read_json(run_dir / CONFIG_FILE)
    cfg = stored["config"]
    ctx: dict[str, Any] = {"run_dir": run_dir, "stored": stored, "cfg": cfg, "plan": plan, "roles": plan["roles"]}
    ctx["stages"] = stage_records(run_dir, [s["name"] for s in plan["stages"]])
    ctx["manifest"] = plan.get("data") or None
    ctx["models"] = {}
    for role in plan["roles"]:
        side = resolve(run_dir, role.get("sidecar") or str(Path(role["model"]).with_suffix(".json")))
        if side.is_file():
            ctx["models"][role["name"]] = read_json(side)
    rows: list[dict[str, str]] = []
    ctx["attack_dirs"], ctx["attack_budgets"] = {}, {}
    for a in plan["attacks"]:
        folder = resolve(run_dir, a["dir"])
        if (folder / "results.csv").is_file():
            ctx["attack_dirs"][(a["attack"], a["source"])] = folder
            rows += read_csv(folder / "results.csv")
            summary = read_record(folder / "summary.json") if (folder / "summary.json").is_file() else {}
            settings = summary.get("attack") or {}
            if settings.get("label"):  # the radius each result label was crafted at (None: a minimal-norm attack)
                ctx["attack_budgets"][settings["label"]] = attack_budget(settings)
    ctx["attack_rows"] = rows
    ctx["samples"] = None
    samples = resolve(run_dir, plan["samples"]) if plan.get("samples") else None
    if samples is not None and (samples / "samples.json").is_file():
        ctx["samples"] = {"dir": samples, **read_json(samples / "samples.json")}
    ctx["certify"] = {}
    for name, folder in (plan.get("certify") or {}).items():
        summary = resolve(run_dir, folder) / "summary.json"
        if summary.is_file():
            ctx["certify"][name] = read_record(summary)
    from dfrobust.report.adaptive import read_adaptive, read_curves

    ctx["adaptive"] = read_adaptive({k: resolve(run_dir, v) for k, v in (plan.get("adaptive") or {}).items()})
    ctx["curves"], ctx["curve_warnings"] = read_curves({k: resolve(run_dir, v) for k, v in (plan.get("curves") or {}).items()})
    ctx["dip"] = None
    dip_dir = resolve(run_dir, plan["dip"]["dir"]) if plan.get("dip") else None
    if dip_dir is not None and (dip_dir / "summary.json").is_file():
        ctx["dip"] = {
            "dir": dip_dir,
            "role": plan["dip"],
            "summary": read_record(dip_dir / "summary.json"),
            "table3": read_csv(dip_dir / "table3.csv"),
            "table4": read_csv(dip_dir / "table4.csv"),
            "sweep": read_csv(dip_dir / "sweep.csv") if (dip_dir / "sweep.csv").is_file() else [],
        }
    return ctx
