"""The ``dip`` stage kind: the DIP study on the role marked ``purifier_classifier`` (``RUN/dip/``).

Owns the ``[dip]`` section; ``plan.records["dip"]`` is ``None`` when no role is the purifier's classifier.
"""

from __future__ import annotations

from typing import Any

from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.stages import Stage


def dip_stage(plan: Plan, cfg: dict[str, Any], device: str) -> Stage | None:
    from dataclasses import asdict

    from dfrobust.defenses.dip import DipConfig, config_key, level_widths
    from dfrobust.studies.dip_study import DipStudyConfig, run_dip_study

    classifier = next((r for r in plan.roles if r.purifier_classifier), None)
    if classifier is None:
        return None
    d = cfg["dip"]
    sc = DipStudyConfig(
        dip=DipConfig(
            iterations=int(d["iterations"]),
            record_every=int(d["record_every"]),
            early_stop=bool(d.get("early_stop", False)),  # runs recorded before early stopping have no such keys
            es_window=int(d.get("es_window", DipConfig.es_window)),
            es_patience=int(d.get("es_patience", DipConfig.es_patience)),
            **level_widths(int(d.get("levels", len(DipConfig.channels_down)))),
        ),
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
    conf["dip"] = config_key(sc.dip)  # early-stopping fields only when on: earlier runs keep their keys
    deps = ["data", plan.model_stage(classifier.name), *(f"attack/{p.name}" for p in adv)]
    plan.records["dip"] = {"dir": "dip", "model": classifier.name, "label": classifier.label, "adv": [p.name for p in adv]}
    # keep_output: the purified batches are reused while the images, classifier and settings are unchanged
    return Stage("dip", conf, out, run, deps=deps, keep_output=True, device=device, sharded=True)


@register_stage_kind
class DipKind(StageKind):
    """The DIP study over the adversarial images crafted on the classifier and the role it transfers from."""

    name = "dip"
    section = "dip"
    needs = ("attack",)
    order = 40
    record_key = "dip"

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        plan.records[self.name] = None
        stage = dip_stage(plan, cfg, device)
        return [stage] if stage is not None else []
