"""The ``curves`` stage kind: APGD robustness curves, ``RUN/curves/<role>/`` per role (when ``[robustness]`` is set)."""

from __future__ import annotations

from typing import Any

from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.roles import Role
from dfrobust.stages import Stage
from dfrobust.utils.names import safe_join


def curves_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    """APGD accuracy of one detector over a range of Linf and L2 radii, with the gradient-masking checks."""
    from dfrobust.studies.curves import run_curves

    r = cfg["robustness"]
    norms = {"linf": [float(e) / 255 for e in r["linf_255"]], "l2": [float(e) for e in r["l2"]]}
    out = safe_join(plan.run_dir / "curves", role.name)
    model = plan.model_path(role.name)
    kw = {
        "norms": norms,
        "max_images": int(r["max_images"]) or None,
        "classes": "both",
        "seed": int(cfg["run"]["seed"]),
        "steps": int(r["steps"]),
        "batch_size": int(r["batch_size"]),
    }

    def run() -> None:
        run_curves(plan.data_dir, model, out, device=device, **kw)

    plan.records.setdefault("curves", {})[role.name] = str(out.relative_to(plan.run_dir))
    conf = {"model": role.name, **kw}
    return Stage(f"curves/{role.name}", conf, out, run, deps=["data", plan.model_stage(role.name)], device=device)


@register_stage_kind
class CurvesKind(StageKind):
    """One curves stage per role, when the config has a ``[robustness]`` section."""

    name = "curves"
    section = "robustness"
    needs = ("models",)
    order = 60
    record_key = "curves"

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        plan.records[self.name] = {}
        if not cfg.get("robustness"):
            return []
        return [curves_stage(plan, cfg, r, device) for r in plan.roles]
