"""The ``certify`` stage kind: randomized-smoothing certificates, ``RUN/certify/<role>/`` per role with ``certify_sigma``.

Owns the ``[certify]`` section.
"""

from __future__ import annotations

from typing import Any

from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.roles import Role
from dfrobust.stages import Stage
from dfrobust.utils.names import safe_join


def certify_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    """Randomized-smoothing certificates of a role trained with noise, at its own sigma."""
    from dataclasses import asdict

    from dfrobust.studies.certification import CertifyConfig, run_certification

    c = cfg["certify"]
    cc = CertifyConfig(
        sigma=float(role.certify_sigma),
        n0=int(c["n0"]),
        n=int(c["n"]),
        alpha=float(c["alpha"]),
        classes="both",
        max_images=int(c["max_images"]) or None,
        batch_size=int(c["batch_size"]),
        seed=int(cfg["run"]["seed"]),
        device=device,
    )
    out = safe_join(plan.run_dir / "certify", role.name)
    model = plan.model_path(role.name)

    def run() -> None:
        run_certification(plan.data_dir, model, cc, out)

    plan.records.setdefault("certify", {})[role.name] = str(out.relative_to(plan.run_dir))
    conf = {k: v for k, v in asdict(cc).items() if k != "device"} | {"model": role.name}
    return Stage(f"certify/{role.name}", conf, out, run, deps=["data", plan.model_stage(role.name)], device=device, sharded=True)


@register_stage_kind
class CertifyKind(StageKind):
    """One certification stage per role trained with noise."""

    name = "certify"
    section = "certify"
    needs = ("models",)
    order = 50
    record_key = "certify"

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        plan.records[self.name] = {}
        return [certify_stage(plan, cfg, r, device) for r in plan.roles if r.certify_sigma]
