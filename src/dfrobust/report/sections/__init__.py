"""Report sections as plug-ins: a section is a class that gets the run's results and returns a :class:`Section`.

A module in this package, in a stage kind's module (:mod:`dfrobust.kinds`), or in another package
under the entry-point group ``dfrobust.report_sections`` registers one::

    from dfrobust.report.sections import ReportSection, RunResults, register_section
    from dfrobust.report.document import Section

    @register_section
    class NoiseSection(ReportSection):
        name = "noise"
        title = "Noise"

        def build(self, run: RunResults) -> Section | None:
            record = run.record("noise")          # the stage kind's entry in plan.json
            return Section(self.title, [f"{record}"]) if record else None

:func:`extra_sections` builds every registered section (by ``order``, then name); the report puts
them after its own result sections, before "Where this run differs from the paper", except a section
with ``first = True`` (the verdict), which opens the report. A section's :meth:`ReportSection.results`
(if not ``None``) lands in ``results.json`` under ``sections``. A section reads the numbers the
report's own sections computed (``RunResults.results``: the leaderboard, Table I, Table V ...) rather
than computing them again, and the run's stage outputs as typed objects (``RunResults.collected``,
a :class:`dfrobust.report.collected.CollectedRun`) rather than reading the files again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dfrobust.report.collected import CollectedRun
from dfrobust.report.document import Section
from dfrobust.utils.plugins import Registry
from dfrobust.utils.runfolder import resolve


@dataclass(frozen=True)
class RunResults:
    """What a report section reads: the run folder, its stored config and plan, where figures go.

    Attributes:
        run_dir: the run folder.
        report_dir: ``RUN/report``.
        figs: ``RUN/report/figs`` (a section saves its PNGs here).
        config: the study config the run was made with (``config.json``'s ``config``).
        plan: ``plan.json`` (each stage kind's record under its key).
        results: the numbers the report's own sections computed (``results.json`` so far: ``leaderboard``,
            ``table1``, ``robust_accuracy``, ``minimal_perturbation``, ``adaptive`` ...); empty outside a run's report.
        collected: what the report read from the run folder (models, attack rows, the DIP study, curves,
            certificates ...); ``None`` outside a run's report (the seeds report).
    """

    run_dir: Path
    report_dir: Path
    figs: Path
    config: dict[str, Any]
    plan: dict[str, Any]
    results: Mapping[str, Any] = field(default_factory=dict)
    collected: CollectedRun | None = None

    def record(self, key: str) -> Any:
        """A stage kind's entry in ``plan.json`` (``None`` when absent)."""
        return self.plan.get(key)

    def path(self, rel: str) -> Path:
        """A path recorded in ``plan.json``, resolved against the run folder."""
        return resolve(self.run_dir, rel)


class ReportSection:
    """One section of the report.

    Class attributes:
        name: the registry name (and its key under ``results.json``'s ``sections``).
        title: the section's heading.
        order: among registered sections, lower first.
        first: open the report (before its own sections) instead of following its result sections.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    order: ClassVar[float] = 100
    first: ClassVar[bool] = False

    def build(self, run: RunResults) -> Section | None:
        """The section, or ``None`` when the run has nothing for it."""
        raise NotImplementedError

    def results(self, run: RunResults) -> Any:
        """Numbers for ``results.json`` (``None``: nothing)."""
        return None


SECTIONS: Registry[ReportSection] = Registry("report section", "dfrobust.report.sections", "dfrobust.report_sections")


def register_section(cls: type[ReportSection]) -> type[ReportSection]:
    """Class decorator: add ``cls`` to every report (see :func:`extra_sections`)."""
    return SECTIONS.register(cls)


def extra_sections(run: RunResults, first: bool | None = None) -> tuple[list[Section], dict[str, Any]]:
    """Every registered section that has something to show, and their ``results.json`` entries by name.

    ``first``: only the sections that open the report (``True``), only the others (``False``), or all (``None``).
    """
    sections, results = [], {}
    for cls in sorted(SECTIONS.classes().values(), key=lambda c: (c.order, c.name)):
        if first is not None and cls.first != first:
            continue
        section = cls()
        built = section.build(run)
        if built is not None:
            sections.append(built)
        numbers = section.results(run)
        if numbers is not None:
            results[cls.name] = numbers
    return sections, results
