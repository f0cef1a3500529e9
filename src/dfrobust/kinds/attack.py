"""The ``attack`` stage kind: ``attack/<attack>-<source>`` per attack run of :func:`attack_plan`.

Whitebox on the source, blackbox on every role whose ``transfer_from`` is the source or that shares
its ``transfer_group``; ``attack.ensemble``: crafted on the ensemble of the other roles of T's
transfer group, evaluated on T (``attack/<attack>-ens-<T>``). Writes ``RUN/attacks/<folder>/``.
Owns the ``[attack]`` section.
"""

from __future__ import annotations

from typing import Any

from dfrobust.errors import DfrobustError
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
    params = {k: v for k, v in a.get(attack, {}).items() if k != "survivors_of"}
    # an attack's own section may attack fewer images than the rest (Square's queries are costly)
    max_images = int(params.pop("max_images", a["max_images"])) or None
    # AutoAttack's chain: attack only the images the earlier runs of the same source left correct
    earlier = [AttackRun(e, run.source, [], run.members) for e in chain_of(cfg, attack)] if not run.members else []
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
    if earlier:  # a stage without a chain keeps the key it had before chains existed
        conf["survivors_of"] = [e.attack for e in earlier]
    survivors_of = [safe_join(plan.run_dir / "attacks", e.folder) for e in earlier]
    if run.members:
        conf["members"] = list(run.members)
    sources = [plan.model_path(m) for m in run.members] if run.members else plan.model_path(run.source)
    # an ensemble is no role: run_attack builds it from its members and evaluates it itself
    targets = [t for t in run.targets if t != run.source] if run.members else run.targets
    name = run.source if run.members else None

    def work() -> None:
        run_attack(
            plan.data_dir,
            sources,
            [plan.model_path(t) for t in targets],
            ac,
            out,
            replace=True,
            source_name=name,
            survivors_of=survivors_of,
        )

    # a redone earlier attack changes this stage's key: run_attack then re-crafts only if the survivors changed
    deps = ["data", *sorted({plan.model_stage(m) for m in [*run.members, *targets]}), *(f"attack/{e.folder}" for e in earlier)]
    # keep_output: a retrained target only re-scores the stored images (run_attack checks the crafting)
    return Stage(f"attack/{run.folder}", conf, out, work, deps=deps, keep_output=True, device=device, sharded=True)


def chain_of(cfg: dict[str, Any], attack: str) -> list[str]:
    """The earlier attacks whose survivors ``attack`` attacks: its section's ``survivors_of``, in chain order, less those
    the study does not run (the paper preset's Square names ``apgd-margin``, which a study adds to ``attack.attacks``
    to join the chain). A name that is no registered attack, or a chain that loops, is a one-line error at planning."""
    from dfrobust.attacks.base import attack_classes

    attacks = list(cfg["attack"]["attacks"])

    def direct(name: str) -> list[str]:
        named = list((cfg["attack"].get(name) or {}).get("survivors_of") or [])
        unknown = [e for e in named if e not in attack_classes()]
        if unknown:
            raise DfrobustError(f"attack.{name}.survivors_of names {unknown[0]!r}, which is no attack ({', '.join(attack_classes())})")
        return [e for e in named if e in attacks]

    seen, todo = [attack], direct(attack)
    for earlier in todo:
        if earlier in seen:
            raise DfrobustError(f"attack.{attack}.survivors_of: {earlier!r} would attack its own survivors (a loop of survivors_of)")
        seen.append(earlier)
        todo += [e for e in direct(earlier) if e not in todo]
    return direct(attack)


def _chain_order(cfg: dict[str, Any]) -> list[str]:
    """``attack.attacks`` with every attack after the attacks whose survivors it attacks (else in the listed order)."""
    out: list[str] = []

    def place(attack: str) -> None:
        if attack not in out:
            for earlier in chain_of(cfg, attack):
                place(earlier)
            out.append(attack)

    for attack in cfg["attack"]["attacks"]:
        place(attack)
    return out


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
    for attack in _chain_order(cfg):
        for src in roles:
            if attack in transfer_only and not any(blackbox(src, r) for r in roles):
                continue  # a transfer attack crafted where nothing transfers would be one more whitebox attack
            if set(chain_of(cfg, attack)) & transfer_only and not any(blackbox(src, r) for r in roles):
                raise DfrobustError(f"attack.{attack}.survivors_of names a transfer-only attack, which does not run on {src.name}")
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
