"""Detector roles of the study, each declared once with its training recipe.

A role is one detector the study trains (or, later, one the user brings): its model name, the
architecture section of ``[train]`` it uses, the settings it trains with on top of the common
ones, the role it fine-tunes, and how the report shows it (group, label, order, the paper's row).
The pipeline plans train and attack stages from the roles; the report orders and labels models
from the role records that ``reproduce`` writes into ``RUN/plan.json``, never from name patterns.

A module in this package (or an entry point of the group ``dfrobust.roles``) that does::

    from dfrobust.roles import Role, register_roles

    @register_roles(order=40)
    def noisy(cfg):
        return [Role(name="resnet18-noisy", family="resnet18", group="noise", label="ResNet-18, noise",
                     start_from="resnet18", recipe={"epochs": 2, "noise_sigma": 0.25})]

adds a detector to every study whose config it accepts (a declaration returns ``[]`` to opt out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.utils.plugins import discover

Declaration = Callable[[dict[str, Any]], list["Role"]]


@dataclass(frozen=True)
class Role:
    """One detector of the study.

    Attributes:
        name: the model's name (its file stem in ``RUN/models``), e.g. ``resnet18-lip50``.
        family: the architecture section of ``[train]`` whose settings apply (``vgg16``, ``resnet18``).
        group: the report's group (``paper``, ``lipschitz``, ``blur`` ...); rows of a group sit together.
        label: a human label for tables and legends.
        start_from: the role whose trained weights this one fine-tunes (``None``: from its init).
        recipe: training settings on top of the common ``[train]`` and family settings (TrainConfig fields).
        transfer_from: the role whose adversarial images this one is evaluated on as a blackbox target.
        paper_row: the key of this model's row in the paper's tables (``None``: the paper has none).
        average_group: rows sharing this key get an average and a best row in Table II (the paper's
            Lipschitz rows).
        purifier_classifier: the classifier the DIP study purifies for (the paper: the blur ResNet).
        sample_source: Fig 2 shows the images crafted on this role (the paper: the ResNet-18).
        certify_sigma: certify this role by randomized smoothing at this noise sigma (``None``: no certificate).
        card: the detector card of a user's detector (``None``: the study trains the role).
        transfer_group: roles sharing this key are evaluated as blackbox targets on each other's adversarial images.
        transfer_to: roles evaluated as blackbox targets on this role's adversarial images (beside those
            whose ``transfer_from`` is this role).
        order: position in tables (then declaration order).
    """

    name: str
    family: str
    group: str
    label: str
    start_from: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    transfer_from: str | None = None
    paper_row: str | None = None
    average_group: str | None = None
    purifier_classifier: bool = False
    sample_source: bool = False
    certify_sigma: float | None = None
    card: str | None = None
    transfer_group: str | None = None
    transfer_to: tuple[str, ...] = ()
    order: int = 0

    def record(self) -> dict[str, Any]:
        """The role as plain JSON (what ``plan.json`` stores for the report)."""
        return asdict(self)


_DECLARATIONS: list[tuple[int, str, Declaration]] = []


def register_roles(order: int = 100) -> Callable[[Declaration], Declaration]:
    """Decorator: ``fn(cfg) -> [Role, ...]`` contributes roles to every study (lower ``order`` first)."""

    def wrap(fn: Declaration) -> Declaration:
        key = f"{fn.__module__}.{fn.__qualname__}"
        if not any(k == key for _, k, _ in _DECLARATIONS):
            _DECLARATIONS.append((order, key, fn))
        return fn

    return wrap


def study_roles(cfg: dict[str, Any]) -> list[Role]:
    """Every role of a study config, in table order; checks names are unique and references exist."""
    discover("dfrobust.roles", "dfrobust.roles")
    roles: list[Role] = []
    for _, _, fn in sorted(_DECLARATIONS, key=lambda d: (d[0], d[1])):
        roles += fn(cfg)
    names = [r.name for r in roles]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DfrobustError(f"detector roles declared twice: {dupes}; rename one")
    for r in roles:
        for ref in (r.start_from, r.transfer_from, *r.transfer_to):
            if ref is not None and ref not in names:
                raise DfrobustError(f"role {r.name} refers to {ref!r}, which this study does not train; known: {names}")
    return sorted(roles, key=lambda r: (r.order, names.index(r.name)))
