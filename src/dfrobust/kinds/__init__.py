"""Stage kinds: one module per kind of stage of a study (data, models, attacks, DIP study ...).

A stage kind is one module in this package (found by package discovery) or in another package that
declares it under the entry-point group ``dfrobust.stage_kinds``: a subclass of
:class:`~dfrobust.kinds.base.StageKind` decorated with :func:`~dfrobust.kinds.base.register_stage_kind`.
It owns its config section, plans its stages (what they need, what they write, the worker they
call) and its record in ``plan.json``; its report section, if any, is a
:class:`dfrobust.report.sections.ReportSection` registered from the same module.
:func:`dfrobust.pipeline.plan_study` plans every registered kind in the dependency order the
kinds declare (:func:`~dfrobust.kinds.base.ordered_kinds`).
"""
