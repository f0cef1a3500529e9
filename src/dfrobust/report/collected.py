"""The run's results as the report gets them: typed objects read once from the run folder.

:func:`dfrobust.report.run_folder.collect` builds one :class:`CollectedRun`; every table, figure and
section of the report reads its fields (and the derived tables computed from them, such as
:class:`dfrobust.report.study_tables.Table2`) instead of keys of a shared dict. The records inside
(a model's sidecar, a CSV row, a stage's ``summary.json``) stay as their files hold them: this module
names what the report reads, not the files' own formats.

A field a stage has not filled yet is empty (``{}``, ``[]``) or ``None``; every field has such a default,
so a test builds the part it needs (``CollectedRun(cfg=..., attack_rows=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfrobust.evaluate.robustness import Budget

#: One row of a stage's CSV, as read (every value a string).
CsvRow = dict[str, str]


@dataclass(frozen=True)
class Samples:
    """The samples stage (Fig 2): its folder and ``samples.json``.

    Attributes:
        dir: the stage's folder (the images its rows name live under it).
        models: the detectors whose P(real) each cell carries, in caption order.
        rows: one row per kind of image (``kind``, ``attack``, ``source``, ``cells`` with ``image`` and ``p_real``).
    """

    dir: Path
    models: list[str]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class DipStudy:
    """The DIP study (Tables III and IV, the choice of T, Figs 5 and 6), once its ``summary.json`` exists.

    Attributes:
        dir: the study's folder.
        role: the plan's ``dip`` record (the classifier's ``model`` and ``label``, the folder).
        summary: the study's ``summary.json``.
        table3, table4, sweep: the study's CSVs (``sweep`` empty when it did not sweep T).
    """

    dir: Path
    role: dict[str, Any]
    summary: dict[str, Any]
    table3: list[CsvRow]
    table4: list[CsvRow]
    sweep: list[CsvRow] = field(default_factory=list)


@dataclass(frozen=True)
class CollectedRun:
    """Everything the report shows, as the run folder holds it (:func:`dfrobust.report.run_folder.collect`).

    Attributes:
        run_dir: the run folder.
        stored: ``config.json`` (``config``, ``data_arg``, ``device``, ``versions``).
        cfg: the study config the run was made with (``stored["config"]``).
        plan: ``plan.json``.
        roles: the plan's detector roles, in the plan's order.
        stages: each planned stage's record (``name``, ``state``, ``seconds``, ``host``), in the plan's order.
        manifest: the data manifest the plan recorded (``None`` when it has none).
        models: each trained (or carded) role's sidecar, by role name.
        attack_rows: every finished attack's ``results.csv`` rows of the images it attacked (one per image, attack and target).
        skipped_rows: the rows of images a survivors-only attack skipped (``skipped``: ``fooled by <earlier attack>``).
        attack_dirs: each finished attack's folder, by (attack, source model).
        attack_budgets: the radius each attack label was crafted at (``None``: an unbounded attack).
        samples: the samples stage (Fig 2), ``None`` before it ran.
        certify: each certified model's ``summary.json``, by model.
        adaptive: each adaptive attack's ``summary.json``, by purifier.
        curves: every robustness-curve row, with its ``model``.
        curve_warnings: each model's gradient-masking warnings from its robustness curves.
        dip: the DIP study, ``None`` before it ran.
    """

    run_dir: Path = Path(".")
    stored: dict[str, Any] = field(default_factory=dict)
    cfg: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    roles: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    attack_rows: list[CsvRow] = field(default_factory=list)
    skipped_rows: list[CsvRow] = field(default_factory=list)
    attack_dirs: dict[tuple[str, str], Path] = field(default_factory=dict)
    attack_budgets: dict[str, Budget] = field(default_factory=dict)
    samples: Samples | None = None
    certify: dict[str, dict[str, Any]] = field(default_factory=dict)
    adaptive: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)
    curve_warnings: dict[str, list[str]] = field(default_factory=dict)
    dip: DipStudy | None = None

    @property
    def user_run(self) -> bool:
        """A run of the user's own detectors (``reproduce --detector``): every role is a card, nothing is trained."""
        return bool(self.roles) and all(r.get("card") for r in self.roles)

    def role(self, name: str) -> dict[str, Any] | None:
        """The role called ``name`` (``None``: not a role of the plan, e.g. an average row)."""
        return next((r for r in self.roles if r["name"] == name), None)
