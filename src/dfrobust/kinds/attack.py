"""The ``attack`` stage kind: ``attack/<attack>-<source>`` per attack run of :func:`attack_plan`.

Whitebox on the source, blackbox on every role whose ``transfer_from`` is the source or that shares
its ``transfer_group``; ``attack.ensemble``: crafted on the ensemble of the other roles of T's
transfer group, evaluated on T (``attack/<attack>-ens-<T>``). Writes ``RUN/attacks/<folder>/``.
Owns the ``[attack]`` section.
"""

from __future__ import annotations

from typing import Any

from dfrobust.kinds.base import AttackRun, Plan, StageKind, register_stage_kind
from dfrobust.roles import Role, study_roles
from dfrobust.stages import Stage
from dfrobust.utils.names import safe_join


def attack_stage(plan: Plan, cfg: dict[str, Any], run: AttackRun, device: str) -> Stage:
    from dfrobust.attacks.base import attack_class, make_attack
    from dfrobust.studies.attack_run import AttackConfig, run_attack
    from dfrobust.utils.plugins import constructor_parameters

    a = cfg["attack"]
    attack = run.attack
    params = dict(a.get(attack, {}))
    # an attack's own section may attack fewer images than the rest (Square's queries are costly)
    max_images = int(params.pop("max_images", a["max_images"])) or None
    # TOML has no tuples: a parameter whose default is a tuple gets one (CW's c_range)
    tuples = {k for k, p in constructor_parameters(attack_class(attack)).items() if isinstance(p.default, tuple)}
    params = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in params.items()}
    make_attack(attack, **params)  # the constructor checks its parameters now, before any stage runs
    ac = AttackConfig(
        attack=attack,
        params=params,
        batch_size=int(a["batch_size"]),
        classes="fake",
        max_images=max_images,
        seed=int(cfg["run"]["seed"]),
        device=device,
    )
    out = safe_join(plan.run_dir / "attacks", run.folder)
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
        return r.name != src.name and (
            r.transfer_from == src.name
            or r.name in src.transfer_to
            or (r.transfer_group is not None and r.transfer_group == src.transfer_group)
        )

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


@register_stage_kind
class AttackKind(StageKind):
    """The attack runs (``plan.records["attack"]``: the :class:`AttackRun` list)."""

    name = "attack"
    section = "attack"
    needs = ("models",)
    order = 20
    record_key = "attacks"

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        plan.records[self.name] = runs = attack_plan(cfg, plan.roles)
        return [attack_stage(plan, cfg, run, device) for run in runs]

    def record(self, plan: Plan) -> Any:
        return [
            {
                "attack": r.attack,
                "source": r.source,
                "targets": r.targets,
                "dir": plan.rel(plan.run_dir / "attacks" / r.folder),
                **({"members": list(r.members)} if r.members else {}),
            }
            for r in plan.attacks
        ]
