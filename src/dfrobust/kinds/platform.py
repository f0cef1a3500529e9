"""The ``platform`` stage kind: attacks that survive re-encoding, with their report section.

With a ``[platform]`` section (``attacks``, ``robust_to``, ``heldout``, ``eot``, ``max_images``),
each attack of ``attacks`` is crafted on the study's sample-source detector (the paper's
ResNet-18) twice, plain and averaged over random draws of the ``robust_to`` chain (EOT; Hussain,
Neekhara et al., WACV 2021), and both are scored losslessly, after that chain and after a held-out
chain the attack did not see: ``RUN/platform/<attack>-<role>/`` (:func:`dfrobust.attacks.robust.run_platform`).
"""

from __future__ import annotations

from typing import Any

from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.report.document import Section
from dfrobust.report.sections import ReportSection, RunResults, register_section
from dfrobust.report.tables import Table, rate
from dfrobust.stages import Stage
from dfrobust.utils.io import read_record
from dfrobust.utils.names import check_name, safe_join


@register_stage_kind
class PlatformKind(StageKind):
    """One stage per attack of ``[platform] attacks`` on the sample-source role."""

    name = "platform"
    section = "platform"
    needs = ("models",)
    order = 65
    record_key = "platform"

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        from dfrobust.attacks.base import attack_class
        from dfrobust.attacks.chain import parse_chain

        plan.records[self.name] = {}
        p = cfg.get("platform") or {}
        role = next((r for r in plan.roles if r.sample_source), None)
        if not p.get("attacks") or role is None:
            return []
        parse_chain(str(p["robust_to"]), "platform.robust_to")  # a bad chain fails at planning, before any stage
        if p.get("heldout"):
            parse_chain(str(p["heldout"]), "platform.heldout")
        stages = []
        for attack in p["attacks"]:
            attack_class(check_name(attack, "platform.attacks entry"))  # an unknown attack: one line now
            params = {k: v for k, v in (cfg.get("attack", {}).get(attack) or {}).items() if k not in ("max_images", "survivors_of")}
            out = safe_join(plan.run_dir / "platform", f"{attack}-{role.name}")
            kw = {"attack": attack, "params": params, "robust_to": str(p["robust_to"]), "heldout": p.get("heldout") or None,
                  "images": int(p.get("max_images", 0)) or None, "eot": int(p.get("eot", 8)), "seed": int(cfg["run"]["seed"])}  # fmt: skip
            model = plan.model_path(role.name)

            def run(out=out, kw=kw, model=model) -> None:
                from dfrobust.attacks.robust import run_platform

                run_platform(plan.data_dir, model, out, device=device, **kw)

            plan.records[self.name][f"{attack}-{role.name}"] = plan.rel(out)
            stages.append(Stage(f"platform/{attack}-{role.name}", {"model": role.name, **kw}, out, run,
                                deps=["data", plan.model_stage(role.name)], device=device))  # fmt: skip
        return stages


@register_section
class PlatformSection(ReportSection):
    """Plain vs platform-robust attacks, lossless and after re-encoding."""

    name = "platform"
    title = "Beyond the paper: attacks that survive the platform"
    order = 50

    def _summaries(self, run: RunResults) -> dict[str, dict[str, Any]]:
        out = {}
        for key, rel in (run.record("platform") or {}).items():
            path = run.path(rel) / "summary.json"
            if path.is_file():
                out[key] = read_record(path)
        return out

    def build(self, run: RunResults) -> Section | None:
        summaries = self._summaries(run)
        if not summaries:
            return None
        t = Table(
            "Success of plain and platform-robust attacks (attacked fakes called real), lossless and after re-encoding",
            ["attack on detector", "variant", "n", "lossless", "after the chain", "after a held-out chain"],
            note="The robust variant averages its gradient over random draws of the chain (EOT, differentiable JPEG in the "
            "backward pass); both are stored as 8-bit images and scored with the same seeded draw per image. The held-out "
            "chain is one the attack never saw. [low–high]: Wilson 95% interval.",
        )
        for key, s in summaries.items():
            for variant in ("plain", "robust"):
                cells = s["success"][variant]
                t.rows.append([key, variant if variant == "plain" else f"robust to {s['robust_to']} (EOT {s['eot']})", str(s["n"]),
                               *(rate(cells[k]["rate"], cells[k]["n"]) for k in ("lossless", "chain", "heldout"))])  # fmt: skip
        held = next(iter(summaries.values()))["heldout"]
        return Section(self.title, [f"Held-out chain: {held}.", t])

    def results(self, run: RunResults) -> Any:
        return self._summaries(run) or None
