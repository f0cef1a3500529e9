"""The paper's whole study as cached, resumable stages on one run folder.

``reproduce`` plans these stages from a study config (a preset plus overrides) and runs them
through :class:`dfrobust.stages.StageRunner`::

    data                      RUN/data/ (synthetic faces, an imported folder, or a pointer)
    train/vgg16, train/resnet18, train/resnet18-lip{5,50,500,5000}, train/resnet18-blur
                              RUN/models/<name>.safetensors + .json
    attack/<fgsm|cw>-<source> RUN/attacks/<attack>-<source>/   (one folder per attack and source)
    dip                       RUN/dip/                          (the DIP study on the blur ResNet)
    report                    RUN/report/

Blackbox sources are the paper's: adversarial images crafted on the VGG-16 are evaluated on
every ResNet, and those crafted on the ResNet-18 on the VGG-16. Every model is also attacked
whitebox.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dfrobust.data.knobs import SwapKnobs
from dfrobust.errors import DfrobustError
from dfrobust.stages import Stage, StageRunner
from dfrobust.utils.io import read_json, write_json

VGG = "vgg16"
RESNET = "resnet18"
BLUR = "resnet18-blur"
CONFIG_FILE = "config.json"
#: Knobs of the built-in fakes a preset may set under ``[data.swap]`` (the fields of SwapKnobs).
SWAP_KNOBS = tuple(f.name for f in fields(SwapKnobs))


def lip_name(lam: float) -> str:
    """Model name of the ResNet-18 regularised with ``lam`` (``resnet18-lip50``)."""
    return f"{RESNET}-lip{lam:g}"


def model_names(cfg: dict[str, Any]) -> list[str]:
    """The seven detectors of the study, in the paper's order."""
    return [VGG, RESNET, *(lip_name(lam) for lam in cfg["train"]["lipschitz"]["lambdas"]), BLUR]


@dataclass
class Plan:
    """The stages of a study and where their outputs land."""

    run_dir: Path
    data_dir: Path
    stages: list[Stage] = field(default_factory=list)

    def model_path(self, name: str) -> Path:
        """Checkpoint path of model ``name``."""
        return self.run_dir / "models" / f"{name}.safetensors"

    def attack_dir(self, attack: str, source: str) -> Path:
        """Output folder of ``attack`` crafted on ``source``."""
        return self.run_dir / "attacks" / f"{attack}-{source}"


def _data_stage(cfg: dict[str, Any], run_dir: Path, data_arg: Path | None) -> tuple[Stage, Path]:
    from dfrobust.data.folders import import_folder, is_dataset_folder
    from dfrobust.data.manifest import manifest_hash
    from dfrobust.data.synthetic import generate_synthetic

    d = cfg["data"]
    seed = int(cfg["run"]["seed"])
    if data_arg is None:
        out = run_dir / "data"
        swap = {k: float(v) for k, v in (d.get("swap") or {}).items()}
        unknown = sorted(set(swap) - set(SWAP_KNOBS))
        if unknown:
            raise DfrobustError(f"unknown data.swap knob(s) {unknown}; use {', '.join(SWAP_KNOBS)}")
        conf = {"source": "synthetic", "n": d["n"], "size": d["size"], "test_fraction": d["test_fraction"], "seed": seed, "swap": swap}

        def make() -> None:
            generate_synthetic(out, n=int(d["n"]), size=int(d["size"]), seed=seed, test_fraction=float(d["test_fraction"]),
                               overwrite=True, **swap)

        return Stage("data", conf, out, make), out
    data_arg = data_arg.resolve()
    if not data_arg.is_dir():
        raise DfrobustError(f"--data {data_arg} is not a folder; give a dataset folder or a folder with real/ and fake/")
    if is_dataset_folder(data_arg):
        # Used in place: the stage only records which dataset it was (never deletes the user's folder).
        pointer = run_dir / "data.json"
        conf = {"source": "dataset", "path": str(data_arg), "manifest": manifest_hash(data_arg)}
        return Stage("data", conf, pointer, lambda: write_json(pointer, conf)), data_arg
    out = run_dir / "data"
    listing = sorted((str(p.relative_to(data_arg)), p.stat().st_size) for p in data_arg.rglob("*") if p.is_file())
    conf = {"source": "import", "path": str(data_arg), "files": len(listing), "bytes": sum(s for _, s in listing),
            "size": d["size"], "test_fraction": d["test_fraction"], "seed": seed}

    def imp() -> None:
        import_folder(data_arg, out, size=int(d["size"]), test_fraction=float(d["test_fraction"]), seed=seed)

    return Stage("data", conf, out, imp), out


def _train_config(cfg: dict[str, Any], arch: str, device: str, **extra: Any):
    from dfrobust.train.config import TrainConfig

    t = cfg["train"]
    common = {k: v for k, v in t.items() if not isinstance(v, dict)}
    # a role's own section may change its architecture (the tiny test preset does)
    values = {**common, "arch": arch, **t.get(arch, {}), "seed": int(cfg["run"]["seed"]), "device": device, **extra}
    return TrainConfig.from_dict(values)


def _train_stage(plan: Plan, name: str, tc: Any, deps: list[str]) -> Stage:
    from dfrobust.train.loop import train_detector
    from dfrobust.train.state import partial_path

    out = plan.model_path(name)

    def train() -> None:
        train_detector(plan.data_dir, tc, out)

    conf = tc.identity()
    if conf.get("resume_from"):
        conf["resume_from"] = Path(conf["resume_from"]).stem  # its fingerprint is in the deps
    return Stage(f"train/{name}", conf, out, train, deps=["data", *deps],
                 extra_paths=[out.with_suffix(".json"), partial_path(out)])


def _attack_config(cfg: dict[str, Any], attack: str, device: str):
    from dfrobust.attacks.experiment import AttackConfig

    a = cfg["attack"]
    params = dict(a.get(attack, {}))
    if "c_range" in params:
        params["c_range"] = tuple(params["c_range"])
    return AttackConfig(attack=attack, params=params, batch_size=int(a["batch_size"]), classes="fake",
                        max_images=int(a["max_images"]) or None, seed=int(cfg["run"]["seed"]), device=device)


def _attack_stage(plan: Plan, cfg: dict[str, Any], attack: str, source: str, targets: list[str], device: str) -> Stage:
    from dfrobust.attacks.experiment import run_attack

    ac = _attack_config(cfg, attack, device)
    out = plan.attack_dir(attack, source)
    conf = {k: v for k, v in ac.__dict__.items() if k != "device"} | {"source": source, "targets": targets}

    def run() -> None:
        run_attack(plan.data_dir, plan.model_path(source), [plan.model_path(t) for t in targets], ac, out, replace=True)

    deps = ["data", *sorted({f"train/{m}" for m in [source, *targets]})]
    # keep_output: a retrained target only re-scores the stored images (run_attack checks the crafting)
    return Stage(f"attack/{attack}-{source}", conf, out, run, deps=deps, keep_output=True)


def attack_plan(cfg: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """``(attack, source, targets)`` for every attack run of the study (whitebox + the paper's blackbox)."""
    names = model_names(cfg)
    resnets = [n for n in names if n != VGG]
    runs = []
    for attack in cfg["attack"]["attacks"]:
        runs.append((attack, VGG, [VGG, *resnets]))
        runs.append((attack, RESNET, [RESNET, VGG]))
        runs += [(attack, m, [m]) for m in resnets if m != RESNET]
    return runs


def _dip_config(cfg: dict[str, Any], device: str):
    from dfrobust.defenses.dip import DipConfig
    from dfrobust.defenses.study import DipStudyConfig

    d = cfg["dip"]
    return DipStudyConfig(
        dip=DipConfig(iterations=int(d["iterations"]), record_every=int(d["record_every"])),
        per_category=int(d["per_category"]),
        classify_at=int(d["classify_at"]),
        stop_at=int(d.get("stop_at", 0)) or None,
        batch_size=int(d["batch_size"]),
        seed=int(cfg["run"]["seed"]),
        device=device,
    )


def _dip_stage(plan: Plan, cfg: dict[str, Any], device: str) -> Stage:
    from dataclasses import asdict

    from dfrobust.defenses.study import run_dip_study

    sc = _dip_config(cfg, device)
    adv = [plan.attack_dir(a, s) for a in cfg["attack"]["attacks"] for s in (VGG, BLUR)]
    out = plan.run_dir / "dip"

    def run() -> None:
        run_dip_study(plan.data_dir, plan.model_path(BLUR), adv, out, sc)

    conf = {k: v for k, v in asdict(sc).items() if k != "device"} | {"adv": [p.name for p in adv], "model": BLUR}
    deps = ["data", f"train/{BLUR}", *(f"attack/{p.name}" for p in adv)]
    # keep_output: the purified batches are reused while the images, classifier and settings are unchanged
    return Stage("dip", conf, out, run, deps=deps, keep_output=True)


def plan_study(cfg: dict[str, Any], run_dir: Path, data_arg: Path | None = None, device: str = "auto") -> Plan:
    """Every stage of the study, in an order that respects their dependencies."""
    run_dir = Path(run_dir)
    data_stage, data_dir = _data_stage(cfg, run_dir, data_arg)
    plan = Plan(run_dir, data_dir, [data_stage])
    t = cfg["train"]
    plan.stages.append(_train_stage(plan, VGG, _train_config(cfg, VGG, device), []))
    plan.stages.append(_train_stage(plan, RESNET, _train_config(cfg, RESNET, device), []))
    lip = t["lipschitz"]
    from_plain = lip["start"] == RESNET
    if lip["start"] not in (RESNET, "scratch"):
        raise DfrobustError(f"train.lipschitz.start must be {RESNET!r} (fine-tune the plain ResNet) or 'scratch', got {lip['start']!r}")
    for lam in lip["lambdas"]:
        start = {"resume_from": str(plan.model_path(RESNET))} if from_plain else {}
        tc = _train_config(cfg, RESNET, device, lipschitz=float(lam), epochs=int(lip["epochs"]), **start)
        plan.stages.append(_train_stage(plan, lip_name(lam), tc, [f"train/{RESNET}"] if from_plain else []))
    blur = t["blur"]
    blur_tc = _train_config(cfg, RESNET, device, epochs=int(blur["epochs"]), blur_fraction=float(blur["fraction"]),
                            blur_sigma=tuple(blur["sigma"]), resume_from=str(plan.model_path(RESNET)))
    plan.stages.append(_train_stage(plan, BLUR, blur_tc, [f"train/{RESNET}"]))
    for attack, source, targets in attack_plan(cfg):
        plan.stages.append(_attack_stage(plan, cfg, attack, source, targets, device))
    plan.stages.append(_dip_stage(plan, cfg, device))
    return plan


def reproduce(
    cfg: dict[str, Any],
    run_dir: str | Path,
    data_arg: str | Path | None = None,
    device: str = "auto",
    force: set[str] | None = None,
) -> Path:
    """Run (or resume) the whole study in ``run_dir`` and write its report; returns the report folder."""
    from dfrobust.report.render import write_report
    from dfrobust.utils.runtime import resolve_device, versions

    run_dir = Path(run_dir)
    resolve_device(device)  # fail early on a missing GPU
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG_FILE, {"config": cfg, "data_arg": str(data_arg) if data_arg else None, "device": device,
                                       "versions": versions()})
    plan = plan_study(cfg, run_dir, Path(data_arg) if data_arg else None, device)
    runner = StageRunner(run_dir, force=force)
    t0 = time.perf_counter()
    for stage in plan.stages:
        runner.run(stage)
    report_dir = write_report(run_dir)
    print(f"done in {time.perf_counter() - t0:.0f} s; report: {report_dir / 'report.html'}")
    return report_dir


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` a ``reproduce`` call wrote in ``run_dir``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DfrobustError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); start one with `dfrobust reproduce --run {run_dir}`")
    return read_json(path)
