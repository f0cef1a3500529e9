"""The ``models`` stage kind: ``train/<role>`` per trained role, ``card/<role>`` per user detector.

Writes ``RUN/models/<role>.safetensors`` + ``.json``; the roles come from :mod:`dfrobust.roles`.
Owns the ``[train]`` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfrobust.roles import Role, study_roles
from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.stages import Stage


def train_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    from dfrobust.train.config import TrainConfig
    from dfrobust.train.loop import train_detector
    from dfrobust.train.state import partial_path

    t = cfg["train"]
    common = {k: v for k, v in t.items() if not isinstance(v, dict)}
    start = {"resume_from": str(plan.model_path(role.start_from))} if role.start_from else {}
    # a family's own section may change its architecture (the tiny test preset does)
    values = {
        **common,
        "arch": role.family,
        **t.get(role.family, {}),
        "seed": int(cfg["run"]["seed"]),
        "device": device,
        **role.recipe,
        **start,
    }
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
    return Stage(
        f"train/{role.name}",
        conf,
        out,
        train,
        deps=deps,
        extra_paths=[out.with_suffix(".json"), partial_path(out)],
        device=device,
        sharded=True,
    )


def card_stage(plan: Plan, cfg: dict[str, Any], role: Role, device: str) -> Stage:
    """A user's detector: checked and evaluated on the test split (its Table I row); nothing is trained."""
    from dfrobust.evaluate.card_record import write_card_record
    from dfrobust.models.cards import card_identity

    out = plan.sidecar_path(role.name)

    def run() -> None:
        write_card_record(plan.data_dir, role.card, out, int(cfg["train"]["eval_batch_size"]), device)

    conf = {"card": role.name, "identity": card_identity(role.card)}
    return Stage(f"card/{role.name}", conf, out, run, deps=["data"], device=device)


@register_stage_kind
class ModelsKind(StageKind):
    """Every role's detector: trained in the run, or a user's card checked and evaluated (sets ``plan.roles``)."""

    name = "models"
    section = "train"
    needs = ("data",)
    order = 10

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        plan.roles = study_roles(cfg)
        return [card_stage(plan, cfg, r, device) if r.card else train_stage(plan, cfg, r, device) for r in plan.roles]
