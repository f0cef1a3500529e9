"""The ``samples`` stage kind: Fig 2's images and scores in ``RUN/samples/``."""

from __future__ import annotations

from typing import Any

from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.stages import Stage


def samples_stage(plan: Plan, cfg: dict[str, Any], device: str) -> Stage | None:
    """Fig 2's images and scores: real test images and the images crafted on the sample-source role, scored by the paper's roles."""
    from dfrobust.evaluate.samples import write_samples

    src = next((r for r in plan.roles if r.sample_source), None)
    source = src.name if src else None
    names = [r.name for r in plan.roles if src and r.group == src.group]
    from dfrobust.attacks.base import paper_attacks

    # Fig 2 shows the paper's attacks (declared with @register_attack(paper=True))
    attacks = [a for a in paper_attacks() if a in cfg["attack"]["attacks"]]
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


@register_stage_kind
class SamplesKind(StageKind):
    """One ``samples`` stage when a role is the sample source and Fig 2's attacks run."""

    name = "samples"
    needs = ("attack",)
    order = 30
    record_key = "samples"

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        stage = samples_stage(plan, cfg, device)
        return [stage] if stage is not None else []

    def record(self, plan: Plan) -> Any:
        return "samples"
