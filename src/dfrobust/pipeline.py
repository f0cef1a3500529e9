"""The paper's whole study as cached, resumable stages on one run folder.

``reproduce`` plans these stages from a study config (a preset plus overrides) and the detector
roles (:mod:`dfrobust.roles`), writes the plan to ``RUN/plan.json`` and runs the stages through
:class:`dfrobust.stages.StageRunner`::

    data                      RUN/data/ (synthetic faces, an imported folder, or a pointer)
    train/<role>              RUN/models/<role>.safetensors + .json, one per role
    attack/<attack>-<source>  RUN/attacks/<attack>-<source>/  (whitebox on the source, blackbox on
                              every role whose ``transfer_from`` is the source)
    attack/<attack>-ens-<T>   RUN/attacks/<attack>-ens-<T>/  (``attack.ensemble``: crafted on the ensemble of the
                              other roles of T's ``transfer_group``, evaluated on T)
    samples                   RUN/samples/  (the images and scores of Fig 2)
    dip                       RUN/dip/      (the DIP study on the role marked ``purifier_classifier``)
    certify/<role>            RUN/certify/<role>/  (randomized smoothing, roles with ``certify_sigma``)
    report                    RUN/report/   (drawn from the stage outputs and plan.json alone)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dfrobust.data.knobs import SwapKnobs
from dfrobust.errors import DfrobustError
from dfrobust.roles import Role, study_roles
from dfrobust.stages import Stage, StageRunner
from dfrobust.utils.io import read_json, write_json
from dfrobust.utils.runfolder import CONFIG_FILE, PLAN_FILE, read_plan

log = logging.getLogger(__name__)
#: Knobs of the built-in fakes a preset may set under ``[data.swap]`` (the fields of SwapKnobs).
SWAP_KNOBS = tuple(f.name for f in fields(SwapKnobs))
#: torchrun's variables, which a stage started by the --devices scheduler must not inherit.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID")
#: The attacks whose images Fig 2 shows (crafted on the ResNet-18 role when it exists).
FIG2_ATTACKS = ("fgsm", "cw")


@dataclass(frozen=True)
class AttackRun:
    """One attack run of the study: ``attack`` crafted on ``source``, evaluated on ``targets``.

    Attributes:
        attack: the registered attack's name.
        source: the source role, or an ensemble's name (``ensemble(a+b)``, its results' source column).
        targets: the models evaluated, the source first (an ensemble is evaluated as its own whitebox target).
        members: the roles of an ensemble source (empty: ``source`` is one role).
        folder: the run's stage name after ``attack/`` and its folder under ``RUN/attacks``.
    """

    attack: str
    source: str
    targets: list[str]
    members: tuple[str, ...] = ()
    folder: str = ""

    def __post_init__(self) -> None:
        if not self.folder:
            object.__setattr__(self, "folder", f"{self.attack}-{self.source}")


@dataclass
class Plan:
    """The stages of a study, its roles and where their outputs land."""

    run_dir: Path
    data_dir: Path
    roles: list[Role] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    attacks: list[AttackRun] = field(default_factory=list)
    dip: dict[str, Any] | None = None
    certify: dict[str, str] = field(default_factory=dict)  #: role name -> certification folder (relative)
    curves: dict[str, str] = field(default_factory=dict)  #: role name -> robustness-curve folder (relative)
    adaptive: dict[str, str] = field(default_factory=dict)  #: purifier -> adaptive-attack folder (relative)

    def _role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    def model_path(self, name: str) -> Path:
        """The model argument of ``name``: its checkpoint in the run, or the user's detector card."""
        role = self._role(name)
        if role is not None and role.card:
            return Path(role.card).resolve()
        return self.run_dir / "models" / f"{name}.safetensors"

    def sidecar_path(self, name: str) -> Path:
        """The JSON record of model ``name`` (a trained model's sidecar, or a card's evaluation record)."""
        return self.run_dir / "models" / f"{name}.json"

    def model_stage(self, name: str) -> str:
        """The stage that makes model ``name`` available (``train/NAME`` or ``card/NAME``)."""
        role = self._role(name)
        return f"card/{name}" if role is not None and role.card else f"train/{name}"

    def attack_dir(self, attack: str, source: str) -> Path:
        """Output folder of ``attack`` crafted on ``source``."""
        return self.run_dir / "attacks" / f"{attack}-{source}"

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.run_dir)) if path.is_relative_to(self.run_dir) else str(path)

    def record(self, cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """``plan.json``: everything ``report`` and ``status`` need, so they never re-plan or read ``--data``."""
        return {
            "preset": cfg["run"].get("preset"),
            "data_dir": self._rel(self.data_dir),
            "data": data,
            "roles": [{**r.record(), "model": self._rel(self.model_path(r.name)), "sidecar": self._rel(self.sidecar_path(r.name))}
                      for r in self.roles],
            "attacks": [{"attack": r.attack, "source": r.source, "targets": r.targets, "dir": self._rel(self.run_dir / "attacks" / r.folder),
                         **({"members": list(r.members)} if r.members else {})} for r in self.attacks],
            "samples": "samples",
            "dip": self.dip,
            "certify": self.certify,
            "curves": self.curves,
            "adaptive": self.adaptive,
            "stages": [s.record(self.run_dir) for s in self.stages],
        }


def _data_stage(cfg: dict[str, Any], run_dir: Path, data_arg: Path | None) -> tuple[Stage, Path]:
    from dfrobust.data.folders import import_folder, is_dataset_folder
    from dfrobust.data.layouts import scan_layout
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
    pointer = run_dir / "data.json"
    if data_arg.is_dir() and is_dataset_folder(data_arg):
        # Used in place: the stage only records which dataset it was (never deletes the user's folder).
        conf = {"source": "dataset", "path": str(data_arg), "manifest": manifest_hash(data_arg)}
        return Stage("data", conf, pointer, lambda: write_json(pointer, conf)), data_arg
    if cfg["run"].get("detectors"):
        # nothing is trained: the user's detectors are scored on their own folder or list as it is, never written to
        layout = scan_layout(data_arg)
        layout.select("test")  # no test images: a one-line error now, not after the first stages
        conf = {"source": "in-place", "path": str(data_arg), "layout": layout.description, "fingerprint": layout.fingerprint()}
        return Stage("data", conf, pointer, lambda: write_json(pointer, conf)), data_arg
    if not data_arg.is_dir():
        raise DfrobustError(f"--data {data_arg} is not a folder; training imports a dataset folder or a folder with real/ and fake/ "
                            "(a .csv/.json list is read in place with --detector only)")
    out = run_dir / "data"
    listing = sorted((str(p.relative_to(data_arg)), p.stat().st_size) for p in data_arg.rglob("*") if p.is_file())
    conf = {"source": "import", "path": str(data_arg), "files": len(listing), "bytes": sum(s for _, s in listing),
            "size": d["size"], "test_fraction": d["test_fraction"], "seed": seed}

    def imp() -> None:
        import_folder(data_arg, out, size=int(d["size"]), test_fraction=float(d["test_fraction"]), seed=seed)

    return Stage("data", conf, out, imp), out


def _train_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    from dfrobust.train.config import TrainConfig
    from dfrobust.train.loop import train_detector
    from dfrobust.train.state import partial_path

    t = cfg["train"]
    common = {k: v for k, v in t.items() if not isinstance(v, dict)}
    start = {"resume_from": str(plan.model_path(role.start_from))} if role.start_from else {}
    # a family's own section may change its architecture (the tiny test preset does)
    values = {**common, "arch": role.family, **t.get(role.family, {}), "seed": int(cfg["run"]["seed"]), "device": device,
              **role.recipe, **start}
    if values.get("init") == "random" or role.start_from:
        values["init"] = None  # "random": no initial weights; a fine-tune starts from its role's weights instead
    tc = TrainConfig.from_dict(values)
    out = plan.model_path(role.name)

    def train() -> None:
        train_detector(plan.data_dir, tc, out)

    conf = tc.identity()
    if conf.get("resume_from"):
        conf["resume_from"] = Path(conf["resume_from"]).stem  # its fingerprint is in the deps
    deps = ["data", *([f"train/{role.start_from}"] if role.start_from else [])]
    return Stage(f"train/{role.name}", conf, out, train, deps=deps, extra_paths=[out.with_suffix(".json"), partial_path(out)],
                 device=device, sharded=True)


def _card_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    """A user's detector: checked and evaluated on the test split (its Table I row); nothing is trained."""
    from dfrobust.evaluate.card_record import write_card_record
    from dfrobust.models.cards import card_identity

    out = plan.sidecar_path(role.name)

    def run() -> None:
        write_card_record(plan.data_dir, role.card, out, int(cfg["train"]["eval_batch_size"]), device)

    conf = {"card": role.name, "identity": card_identity(role.card)}
    return Stage(f"card/{role.name}", conf, out, run, deps=["data"], device=device)


def _attack_stage(plan: Plan, cfg: dict[str, Any], run: AttackRun, device: str) -> Stage:
    from dfrobust.studies.attack_run import AttackConfig, run_attack

    a = cfg["attack"]
    attack = run.attack
    params = dict(a.get(attack, {}))
    # an attack's own section may attack fewer images than the rest (Square's queries are costly)
    max_images = int(params.pop("max_images", a["max_images"])) or None
    if "c_range" in params:
        params["c_range"] = tuple(params["c_range"])
    ac = AttackConfig(attack=attack, params=params, batch_size=int(a["batch_size"]), classes="fake",
                      max_images=max_images, seed=int(cfg["run"]["seed"]), device=device)
    out = plan.run_dir / "attacks" / run.folder
    conf = {k: v for k, v in ac.__dict__.items() if k != "device"} | {"source": run.source, "targets": run.targets}
    if run.members:
        conf["members"] = list(run.members)
    sources = [plan.model_path(m) for m in run.members] if run.members else plan.model_path(run.source)
    # an ensemble is no role: run_attack builds it from its members and evaluates it itself
    targets = [t for t in run.targets if t != run.source] if run.members else run.targets
    name = run.source if run.members else None

    def work() -> None:
        run_attack(plan.data_dir, sources, [plan.model_path(t) for t in targets], ac, out, replace=True, source_name=name)

    deps = ["data", *sorted({plan.model_stage(m) for m in [*run.members, *targets]})]
    # keep_output: a retrained target only re-scores the stored images (run_attack checks the crafting)
    return Stage(f"attack/{run.folder}", conf, out, work, deps=deps, keep_output=True, device=device, sharded=True)


def attack_plan(cfg: dict[str, Any], roles: list[Role] | None = None) -> list[AttackRun]:
    """Every attack run: whitebox on each role (for the attacks of ``attack.transfer_only``, only on roles
    others transfer from), blackbox per ``transfer_from`` and among the roles of one ``transfer_group``;
    then, for each attack of ``attack.ensemble``, one run per member T of a transfer group of at least
    3 roles, crafted on the ensemble of the group's other roles and evaluated on T."""
    from dfrobust.models.ensemble import ensemble_name

    roles = roles if roles is not None else study_roles(cfg)

    def blackbox(src: Role, r: Role) -> bool:
        return r.name != src.name and (r.transfer_from == src.name or (r.transfer_group is not None and r.transfer_group == src.transfer_group))

    runs = []
    transfer_only = set(cfg["attack"].get("transfer_only") or [])
    for attack in cfg["attack"]["attacks"]:
        for src in roles:
            if attack in transfer_only and not any(blackbox(src, r) for r in roles):
                continue  # a transfer attack crafted where nothing transfers would be one more whitebox attack
            runs.append(AttackRun(attack, src.name, [src.name, *(r.name for r in roles if blackbox(src, r))]))
    # Only transfer groups (the user's cards) get ensembles: the paper's roles each transfer from one
    # source (transfer_from), as in the paper, so they have no "other members" to ensemble.
    groups: dict[str, list[Role]] = {}
    for r in roles:
        if r.transfer_group is not None:
            groups.setdefault(r.transfer_group, []).append(r)
    for attack in cfg["attack"].get("ensemble") or []:
        for members in (g for g in groups.values() if len(g) >= 3):
            for target in members:
                others = tuple(r.name for r in members if r is not target)
                name = ensemble_name(others)
                runs.append(AttackRun(attack, name, [name, target.name], members=others, folder=f"{attack}-ens-{target.name}"))
    return runs


def _samples_stage(plan: Plan, cfg: dict[str, Any], device: str) -> Stage | None:
    """Fig 2's images and scores: real test images and the images crafted on the sample-source role, scored by the paper's roles."""
    from dfrobust.evaluate.samples import write_samples

    src = next((r for r in plan.roles if r.sample_source), None)
    source = src.name if src else None
    names = [r.name for r in plan.roles if src and r.group == src.group]
    attacks = [a for a in FIG2_ATTACKS if a in cfg["attack"]["attacks"]]
    if source is None or not attacks:
        return None
    out = plan.run_dir / "samples"
    dirs = {a: plan.attack_dir(a, source) for a in attacks}
    models = {n: plan.model_path(n) for n in names}

    def run() -> None:
        write_samples(plan.data_dir, models, dirs, out, device=device)

    conf = {"source": source, "models": names, "attacks": attacks}
    deps = ["data", *(plan.model_stage(n) for n in names), *(f"attack/{a}-{source}" for a in attacks)]
    return Stage("samples", conf, out, run, deps=deps, device=device)


def _dip_stage(plan: Plan, cfg: dict[str, Any], device: str) -> Stage | None:
    from dataclasses import asdict

    from dfrobust.defenses.dip import DipConfig
    from dfrobust.studies.dip_study import DipStudyConfig, run_dip_study

    classifier = next((r for r in plan.roles if r.purifier_classifier), None)
    if classifier is None:
        return None
    d = cfg["dip"]
    sc = DipStudyConfig(
        dip=DipConfig(iterations=int(d["iterations"]), record_every=int(d["record_every"])),
        per_category=int(d["per_category"]),
        classify_at=int(d["classify_at"]),
        stop_at=int(d.get("stop_at", 0)) or None,
        batch_size=int(d["batch_size"]),
        seed=int(cfg["run"]["seed"]),
        device=device,
        purifiers=tuple(d["purifiers"]),
    )
    sc.validate()  # an unknown purifier or classify_at past the end fails before any stage runs
    sources = [s for s in (classifier.transfer_from, classifier.name) if s]
    attacks = [a for a in d.get("attacks", cfg["attack"]["attacks"]) if a in cfg["attack"]["attacks"]]
    adv = [plan.attack_dir(a, s) for a in attacks for s in sources]
    out = plan.run_dir / "dip"
    model = plan.model_path(classifier.name)

    def run() -> None:
        run_dip_study(plan.data_dir, model, adv, out, sc)

    conf = {k: v for k, v in asdict(sc).items() if k != "device"} | {"adv": [p.name for p in adv], "model": classifier.name}
    deps = ["data", plan.model_stage(classifier.name), *(f"attack/{p.name}" for p in adv)]
    plan.dip = {"dir": "dip", "model": classifier.name, "label": classifier.label, "adv": [p.name for p in adv]}
    # keep_output: the purified batches are reused while the images, classifier and settings are unchanged
    return Stage("dip", conf, out, run, deps=deps, keep_output=True, device=device, sharded=True)


def _certify_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    """Randomized-smoothing certificates of a role trained with noise, at its own sigma."""
    from dataclasses import asdict

    from dfrobust.studies.certification import CertifyConfig, run_certification

    c = cfg["certify"]
    cc = CertifyConfig(sigma=float(role.certify_sigma), n0=int(c["n0"]), n=int(c["n"]), alpha=float(c["alpha"]), classes="both",
                       max_images=int(c["max_images"]) or None, batch_size=int(c["batch_size"]), seed=int(cfg["run"]["seed"]),
                       device=device)
    out = plan.run_dir / "certify" / role.name
    model = plan.model_path(role.name)

    def run() -> None:
        run_certification(plan.data_dir, model, cc, out)

    plan.certify[role.name] = str(out.relative_to(plan.run_dir))
    conf = {k: v for k, v in asdict(cc).items() if k != "device"} | {"model": role.name}
    return Stage(f"certify/{role.name}", conf, out, run, deps=["data", plan.model_stage(role.name)], device=device, sharded=True)


def _curves_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    """APGD accuracy of one detector over a range of Linf and L2 radii, with the gradient-masking checks."""
    from dfrobust.studies.curves import run_curves

    r = cfg["robustness"]
    norms = {"linf": [float(e) / 255 for e in r["linf_255"]], "l2": [float(e) for e in r["l2"]]}
    out = plan.run_dir / "curves" / role.name
    model = plan.model_path(role.name)
    kw = {"norms": norms, "max_images": int(r["max_images"]) or None, "classes": "both", "seed": int(cfg["run"]["seed"]),
          "steps": int(r["steps"]), "batch_size": int(r["batch_size"])}

    def run() -> None:
        run_curves(plan.data_dir, model, out, device=device, **kw)

    plan.curves[role.name] = str(out.relative_to(plan.run_dir))
    conf = {"model": role.name, **kw}
    return Stage(f"curves/{role.name}", conf, out, run, deps=["data", plan.model_stage(role.name)], device=device)


def fooled_fakes(dip_dir: Path) -> list[str]:
    """The clean fakes behind the DIP study's perturbed fakes that fooled its classifier (the adaptive attack's images)."""
    from dfrobust.utils.io import read_csv

    rows = read_csv(dip_dir / "predictions.csv")
    return list(dict.fromkeys(r["image"] for r in rows if r["category"].endswith("/fake-wrong") and r["source"] != "clean"))


def _adaptive_stage(plan: Plan, cfg: dict[str, Any], purifier: str, device: str) -> Stage | None:
    """An adaptive attack (BPDA + EOT) through ``purifier`` in front of the DIP study's classifier."""
    from dfrobust.studies.adaptive_run import run_adaptive
    from dfrobust.defenses.transforms import default_blur_sigma

    if plan.dip is None:
        return None
    a, d = cfg["adaptive"], cfg["dip"]
    model = plan.dip["model"]
    params: dict[str, Any] = {}
    attack_params: dict[str, Any] = {}
    if purifier == "dip":  # the study's DIP, classified at its T; the attack sees a cheaper one
        params = {"iterations": int(d["classify_at"]), "classify_at": int(d["classify_at"])}
        cheap = min(int(a["dip_attack_iterations"]), int(d["classify_at"]))
        attack_params = {"iterations": cheap, "classify_at": cheap}
    elif purifier == "blur":  # as scored beside DIP in Table III
        params = {"sigma": default_blur_sigma(int(cfg["data"]["size"]))}
    atk = {"steps": int(a["steps"])} | {k: v for k, v in cfg["attack"].get(a["attack"], {}).items() if k not in ("steps", "max_images")}
    out = plan.run_dir / "adaptive" / purifier
    dip_dir = plan.run_dir / plan.dip["dir"]
    kw = {"purifier_params": params, "attack_name": str(a["attack"]), "attack_params": atk, "eot": int(a["eot"]),
          "bpda": str(a["bpda"]), "attack_purifier_params": attack_params, "eval_draws": int(a["eval_draws"]),
          "seed": int(cfg["run"]["seed"]), "batch_size": int(a["batch_size"]), "nonadaptive": bool(a.get("nonadaptive", True))}

    limit = int(a.get("max_images", 0)) or None

    def run() -> None:
        images = fooled_fakes(dip_dir)[:limit]
        if images:
            run_adaptive(plan.data_dir, plan.model_path(model), purifier, out_dir=out, images=images, device=device,
                         replace=True, **kw)
        else:  # nothing fooled the classifier: nothing for an adaptive attack to improve on
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "summary.json", {"complete": True, "defense": purifier, "n": 0, "note": "no fooled fakes in the DIP study"})

    plan.adaptive[purifier] = str(out.relative_to(plan.run_dir))
    conf = {"purifier": purifier, "model": model, "max_images": limit, **kw}
    return Stage(f"adaptive/{purifier}", conf, out, run, deps=["data", plan.model_stage(model), "dip"], device=device)


def plan_study(cfg: dict[str, Any], run_dir: Path, data_arg: Path | None = None, device: str = "auto") -> Plan:
    """Every stage of the study, in an order that respects their dependencies."""
    run_dir = Path(run_dir)
    data_stage, data_dir = _data_stage(cfg, run_dir, data_arg)
    plan = Plan(run_dir, data_dir, study_roles(cfg), [data_stage])
    for role in plan.roles:
        plan.stages.append(_card_stage(plan, cfg, role, device) if role.card else _train_stage(plan, cfg, role, device))
    plan.attacks = attack_plan(cfg, plan.roles)
    for run in plan.attacks:
        plan.stages.append(_attack_stage(plan, cfg, run, device))
    for stage in (_samples_stage(plan, cfg, device), _dip_stage(plan, cfg, device)):
        if stage is not None:
            plan.stages.append(stage)
    for role in plan.roles:
        if role.certify_sigma:
            plan.stages.append(_certify_stage(plan, cfg, role, device))
    if cfg.get("robustness"):
        plan.stages += [_curves_stage(plan, cfg, role, device) for role in plan.roles]
    for purifier in (cfg.get("adaptive") or {}).get("purifiers", []):
        stage = _adaptive_stage(plan, cfg, purifier, device)
        if stage is not None:
            plan.stages.append(stage)
    return plan


def _data_summary(plan: Plan) -> dict[str, Any]:
    """What the report says of the data, kept in plan.json so it survives a moved data folder."""
    from dfrobust.data.layouts import scan_layout
    from dfrobust.data.manifest import manifest_hash, read_manifest

    data_dir = plan.data_dir
    if not (data_dir / "manifest.json").is_file():
        if data_dir == plan.run_dir / "data":
            return {}  # synthetic or imported data not made yet
        layout = scan_layout(data_dir)  # the user's folder or list, read in place
        found = layout.summary()
        return {"in_place": True, "layout": found["layout"], "counts": found["counts"], "groups": found["groups"],
                "n_images": found["n_images"], "manifest_hash": found["fingerprint"]}
    man = read_manifest(data_dir)
    return {"image_size": man.get("image_size"), "counts": man.get("counts"), "created_by": man.get("created_by"),
            "manifest_hash": manifest_hash(data_dir)}


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
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG_FILE, {"config": cfg, "data_arg": str(data_arg) if data_arg else None, "device": device,
                                           "devices": devices, "world_size": ctx.world_size, "versions": versions()})
        write_json(run_dir / PLAN_FILE, plan.record(cfg, _data_summary(plan)))
    runner = StageRunner(run_dir, force=force)
    t0 = time.perf_counter()
    runner.run(plan.stages[0])  # the data: every other stage reads it
    if ctx.is_main:
        write_json(run_dir / PLAN_FILE, plan.record(cfg, _data_summary(plan)))  # its size and counts exist now
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
    return read_json(path)


def stored_stages(run_dir: str | Path) -> list[Stage]:
    """The stages of a run as its ``plan.json`` recorded them (for ``status``; they cannot run)."""
    run_dir = Path(run_dir)
    return [Stage.from_record(rec, run_dir) for rec in read_plan(run_dir)["stages"]]
