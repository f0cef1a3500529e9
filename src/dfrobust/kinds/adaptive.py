"""The ``adaptive`` stage kind: BPDA + EOT attacks through each purifier of ``[adaptive]``, ``RUN/adaptive/<purifier>/``.

It attacks the clean fakes behind the DIP study's fooled fakes and, with ``adaptive.natural = N``,
N further test fakes (the natural threat: fakes the defended detector may still get right), so it
needs the ``dip`` kind; a study without a DIP study (no role is the purifier's classifier) has no
adaptive stages. ``[adaptive.<purifier>]`` overrides the common settings for one purifier
(:func:`purifier_settings`). Through DIP the attack sees the defense's own DIP (its iterations and
``classify_at``; ``[adaptive.dip] bpda = "exact"``: the true gradient) unless
``attack_iterations`` names a cheaper one, which the summary and Table V then mark.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.stages import Stage
from dfrobust.utils.io import write_json
from dfrobust.utils.names import safe_join

log = logging.getLogger(__name__)


def attacked_fakes(data_dir: Path, dip_dir: Path, natural: int, limit: int | None, seed: int) -> tuple[list[str], list[str]]:
    """The images to attack: the study's fooled fakes (at most ``limit``), then ``natural`` other test fakes (seeded); and the first list."""
    from dfrobust.data.layouts import CLASS_CHOICES, load_images

    fooled = fooled_fakes(dip_dir)[:limit] if limit != 0 else []
    extra: list[str] = []
    if natural:
        taken = set(fooled)
        others = [p for p in load_images(data_dir, "test", CLASS_CHOICES["fake"], seed=seed)[0].paths if p not in taken]
        extra = others[:natural]
    return fooled + extra, fooled


def fooled_fakes(dip_dir: Path) -> list[str]:
    """The clean fakes behind the DIP study's perturbed fakes that fooled its classifier (the adaptive attack's images)."""
    from dfrobust.utils.io import read_csv

    rows = read_csv(dip_dir / "predictions.csv")
    return list(dict.fromkeys(r["image"] for r in rows if r["category"].endswith("/fake-wrong") and r["source"] != "clean"))


def purifier_settings(section: dict[str, Any], purifier: str) -> dict[str, Any]:
    """``[adaptive]``'s settings for one purifier: the common keys, overridden by its own ``[adaptive.<purifier>]`` table."""
    common = {k: v for k, v in section.items() if not isinstance(v, dict)}
    return common | dict(section.get(purifier) or {})


def adaptive_stage(plan: Plan, cfg: dict[str, Any], purifier: str, device: str) -> Stage | None:
    """An adaptive attack (BPDA + EOT) through ``purifier`` in front of the DIP study's classifier."""
    from dfrobust.studies.adaptive_run import run_adaptive
    from dfrobust.defenses.adaptive import check_bpda
    from dfrobust.defenses.base import make_purifier
    from dfrobust.defenses.dip import level_widths
    from dfrobust.defenses.transforms import default_blur_sigma

    if plan.dip is None:
        return None
    a, d = purifier_settings(cfg["adaptive"], purifier), cfg["dip"]
    model = plan.dip["model"]
    params: dict[str, Any] = {}
    attack_params: dict[str, Any] = {}
    bpda = str(a["bpda"])
    if purifier == "dip":  # the study's DIP, classified at its T; the attack sees it too unless a cheaper one is asked for
        # the study's network; the paper's 5 levels add no key, so earlier runs keep theirs
        net = level_widths(int(d["levels"])) if int(d.get("levels", 5)) != 5 else {}
        params = {"iterations": int(d["classify_at"]), "classify_at": int(d["classify_at"]), **net}
        cheap = int(a.get("attack_iterations", a.get("dip_attack_iterations", 0)))
        if 0 < cheap < int(d["classify_at"]):
            attack_params = {"iterations": cheap, "classify_at": cheap, **net}
    elif purifier == "blur":  # as scored beside DIP in Table III
        params = {"sigma": default_blur_sigma(int(cfg["data"]["size"]))}
    check_bpda(make_purifier(purifier, **params), bpda)  # a mode that does not apply fails before any stage runs
    atk = {"steps": int(a["steps"])} | {
        k: v for k, v in cfg["attack"].get(a["attack"], {}).items() if k not in ("steps", "max_images", "survivors_of")
    }
    out = safe_join(plan.run_dir / "adaptive", purifier)
    dip_dir = plan.run_dir / plan.dip["dir"]
    kw = {
        "purifier_params": params,
        "attack_name": str(a["attack"]),
        "attack_params": atk,
        "eot": int(a["eot"]),
        "bpda": bpda,
        "segment": (int(a.get("segment", 0)) or None) if bpda == "exact" else None,  # 0: about sqrt of the steps
        "attack_purifier_params": attack_params,
        "eval_draws": int(a["eval_draws"]),
        "seed": int(cfg["run"]["seed"]),
        "batch_size": int(a["batch_size"]),
        "nonadaptive": bool(a.get("nonadaptive", True)),
        "sanity_images": int(a.get("sanity_images", 0)),
    }

    limit = int(a.get("max_images", 0)) or None
    natural = int(a.get("natural", 0))

    def run() -> None:
        images, fooled = attacked_fakes(plan.data_dir, dip_dir, natural, limit, kw["seed"])
        if images:
            run_adaptive(
                plan.data_dir, plan.model_path(model), purifier, out_dir=out, images=images, device=device, replace=True,
                study_fooled=fooled, **kw,
            )  # fmt: skip
        else:  # nothing fooled the classifier: nothing for an adaptive attack to improve on
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "summary.json", {"complete": True, "defense": purifier, "n": 0, "note": "no fooled fakes in the DIP study"})

    plan.records.setdefault("adaptive", {})[purifier] = str(out.relative_to(plan.run_dir))
    conf = {"purifier": purifier, "model": model, "max_images": limit, "natural": natural, **kw}
    return Stage(f"adaptive/{purifier}", conf, out, run, deps=["data", plan.model_stage(model), "dip"], device=device)


@register_stage_kind
class AdaptiveKind(StageKind):
    """One adaptive-attack stage per purifier of ``adaptive.purifiers``."""

    name = "adaptive"
    section = "adaptive"
    needs = ("dip",)
    order = 70
    record_key = "adaptive"

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        plan.records[self.name] = {}
        purifiers = (cfg.get("adaptive") or {}).get("purifiers", [])
        if purifiers and plan.dip is None:
            log.info("no adaptive stages: the study has no DIP study (no role is the purifier's classifier)")
            return []
        return [s for s in (adaptive_stage(plan, cfg, p, device) for p in purifiers) if s is not None]
