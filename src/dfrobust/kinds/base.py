"""The plan of a study and the stage-kind plug-in interface.

A stage kind plans the stages of one part of the study::

    from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
    from dfrobust.stages import Stage

    @register_stage_kind
    class Noise(StageKind):
        name = "noise"          # its registry name and its key in plan.json
        section = "noise"       # the config section it owns (absent: it plans nothing)
        needs = ("models",)     # kinds planned before it, whose records it reads
        order = 65              # among kinds whose needs are met, lower first

        def plan(self, plan, cfg, device):
            ...                 # return [Stage(...)]; keep what the report needs in plan.records[self.name]

:func:`ordered_kinds` sorts the registered kinds so that each comes after the kinds it needs
(ties by ``order``, then name); a need that no registered kind provides is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dfrobust.errors import DfrobustError
from dfrobust.roles import Role
from dfrobust.stages import Stage
from dfrobust.utils.plugins import Registry
from dfrobust.utils.names import safe_join


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
    """The stages of a study, its roles, where their outputs land and each kind's record.

    Attributes:
        run_dir: the run folder.
        data_arg: the ``--data`` argument (``None``: the data kind makes the data).
        data_dir: where the data is read (set by the ``data`` kind).
        roles: the study's detectors (set by the ``models`` kind).
        stages: every stage, in planning order.
        kinds: the stage kinds planned, in order.
        records: each kind's record by kind name (what its :meth:`StageKind.record` writes to plan.json).
    """

    run_dir: Path
    data_arg: Path | None = None
    data_dir: Path = Path()
    roles: list[Role] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    kinds: list[StageKind] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)

    # what earlier callers read as fields: each kind's record
    @property
    def attacks(self) -> list[AttackRun]:
        """The attack runs (the ``attack`` kind's record)."""
        return self.records.get("attack", [])

    @property
    def dip(self) -> dict[str, Any] | None:
        """The DIP study's record (``None``: no DIP study)."""
        return self.records.get("dip")

    @property
    def certify(self) -> dict[str, str]:
        """Role name -> certification folder (relative)."""
        return self.records.get("certify", {})

    @property
    def curves(self) -> dict[str, str]:
        """Role name -> robustness-curve folder (relative)."""
        return self.records.get("curves", {})

    @property
    def adaptive(self) -> dict[str, str]:
        """Purifier -> adaptive-attack folder (relative)."""
        return self.records.get("adaptive", {})

    def _role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    def model_path(self, name: str) -> Path:
        """The model argument of ``name``: its checkpoint in the run, or the user's detector card."""
        role = self._role(name)
        if role is not None and role.card:
            return Path(role.card).resolve()
        return safe_join(self.run_dir / "models", f"{name}.safetensors")

    def sidecar_path(self, name: str) -> Path:
        """The JSON record of model ``name`` (a trained model's sidecar, or a card's evaluation record)."""
        return safe_join(self.run_dir / "models", f"{name}.json")

    def model_stage(self, name: str) -> str:
        """The stage that makes model ``name`` available (``train/NAME`` or ``card/NAME``)."""
        role = self._role(name)
        return f"card/{name}" if role is not None and role.card else f"train/{name}"

    def attack_dir(self, attack: str, source: str) -> Path:
        """Output folder of ``attack`` crafted on ``source``."""
        return safe_join(self.run_dir / "attacks", f"{attack}-{source}")

    def rel(self, path: Path) -> str:
        """``path`` relative to the run folder when it is inside it."""
        return str(path.relative_to(self.run_dir)) if path.is_relative_to(self.run_dir) else str(path)

    def record(self, cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """``plan.json``: everything ``report`` and ``status`` need, so they never re-plan or read ``--data``."""
        out: dict[str, Any] = {
            "preset": cfg["run"].get("preset"),
            "data_dir": self.rel(self.data_dir),
            "data": data,
            "roles": [
                {**r.record(), "model": self.rel(self.model_path(r.name)), "sidecar": self.rel(self.sidecar_path(r.name))}
                for r in self.roles
            ],
        }
        for kind in self.kinds:
            if kind.record_key:
                out[kind.record_key] = kind.record(self)
        out["stages"] = [s.record(self.run_dir) for s in self.stages]
        return out


class StageKind:
    """One kind of stage: plans its stages from the study config and keeps its record for the report.

    Class attributes:
        name: the registry name; ``plan.records[name]`` holds what the kind keeps for later kinds.
        section: the config section the kind owns (``None``: it reads only ``run`` and the shared sections).
        needs: the kinds that must be planned before this one (their records are read).
        order: among kinds whose needs are met, lower plans first (keeps stage order stable).
        record_key: the kind's key in ``plan.json`` (``None``: nothing recorded).
    """

    name: ClassVar[str] = ""
    section: ClassVar[str | None] = None
    needs: ClassVar[tuple[str, ...]] = ()
    order: ClassVar[float] = 100
    record_key: ClassVar[str | None] = None

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        """The kind's stages (may read ``plan.records`` of the kinds it needs and set its own)."""
        raise NotImplementedError

    def record(self, plan: Plan) -> Any:
        """The kind's entry in ``plan.json`` (JSON-serialisable); its ``plan.records`` entry by default."""
        return plan.records.get(self.name)


STAGE_KINDS: Registry[StageKind] = Registry("stage kind", "dfrobust.kinds", "dfrobust.stage_kinds")


def register_stage_kind(cls: type[StageKind]) -> type[StageKind]:
    """Class decorator: make ``cls`` a stage kind of every study (planned by :func:`ordered_kinds`)."""
    return STAGE_KINDS.register(cls)


def ordered_kinds() -> list[StageKind]:
    """One instance of every registered stage kind, each after the kinds it ``needs`` (ties: ``order``, name).

    A need that no registered kind provides, or a cycle of needs, is a one-line error.
    """
    classes = STAGE_KINDS.classes()
    for name, cls in classes.items():
        missing = sorted(set(cls.needs) - set(classes))
        if missing:
            raise DfrobustError(
                f"stage kind {name!r} needs {missing}, which no registered stage kind provides; registered: {sorted(classes)}"
            )
    done: list[str] = []
    pending = dict(classes)
    while pending:
        ready = [c for c in pending.values() if set(c.needs) <= set(done)]
        if not ready:
            raise DfrobustError(f"stage kinds {sorted(pending)} need each other (a cycle of `needs`)")
        nxt = min(ready, key=lambda c: (c.order, c.name))
        done.append(nxt.name)
        del pending[nxt.name]
    return [classes[n]() for n in done]
