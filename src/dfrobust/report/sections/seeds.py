"""The spread over seeds: each seed's headline numbers and their mean, sd, min and max (``reproduce --seeds``).

A ``--seeds`` run folder holds one run per seed (``RUN/seed-N``) and ``RUN/seeds.json``; its
combined report (:mod:`dfrobust.report.seeds_report`) passes that record as the plan's ``seeds``
entry. This section reads each seed's own ``report/results.json`` (never recomputes it) and takes
its headline numbers: per leaderboard row (detector or defense) and per Table I detector the
clean accuracy and the robust accuracy at the study's threat model, and the DIP study's accuracy at threshold 0.25 beside the
undefended detector at 0.5, its real recall and the share of fooled fakes it catches.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from dfrobust.report.document import Section
from dfrobust.report.sections import ReportSection, RunResults, register_section
from dfrobust.report.tables import Table, pct
from dfrobust.utils.io import read_record

#: The per-detector headline numbers (keys of a leaderboard row).
DETECTOR_NUMBERS = ("clean_accuracy", "robust_accuracy")
#: The DIP study's headline numbers: (key, Table III/IV method, threshold, column, label).
DIP_NUMBERS = (
    ("accuracy", "dip", 0.25, "accuracy", "DIP accuracy (threshold 0.25)"),
    ("undefended_accuracy", "baseline", 0.5, "accuracy", "undefended accuracy on the DIP images (0.5)"),
    ("real_recall", "dip", 0.25, "real_recall", "DIP real images kept as real (0.25)"),
)
#: Table IV's row and column for "fooled fakes the DIP defense catches".
CAUGHT = ("fooled_fakes_caught", "perturbed/fake-wrong", "dip@0.25", "DIP: perturbed fakes that fooled the detector, caught (0.25)")


def _number(value: Any) -> float | None:
    """A stored number (CSV text or JSON) as a float; blanks and NaN as ``None``."""
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """One run's headline numbers from its ``results.json``: ``threat_model``, ``detectors`` and ``dip``."""
    detectors: dict[str, dict[str, Any]] = {}
    for r in results.get("leaderboard", []):  # every ranked detector and defense (a purifier in front of one too)
        if r.get("defense"):
            detectors[r["defense"]] = {
                "clean_accuracy": _number(r.get("clean_accuracy")),
                "robust_accuracy": _number(r.get("robust_accuracy")),
                "n_clean": r.get("n_test"),
                "n_robust": r.get("n_robust"),
            }
    robust = results.get("robust_accuracy") or {}
    for r in results.get("table1", []):  # Table I's detectors that the leaderboard leaves out (an attack source only)
        name = r.get("model")
        if name and not r.get("group") and not name.endswith(")") and name not in detectors:
            ra = robust.get(name) or {}
            detectors[name] = {
                "clean_accuracy": _number(r.get("accuracy")),
                "robust_accuracy": _number(ra.get("accuracy")),
                "n_clean": r.get("n"),
                "n_robust": ra.get("n"),
            }
    t3 = {(r.get("method"), _number(r.get("threshold"))): r for r in results.get("table3", [])}
    dip: dict[str, Any] = {}
    for key, method, thr, column, _ in DIP_NUMBERS:
        dip[key] = _number((t3.get((method, thr)) or {}).get(column))
    if ("dip", 0.25) in t3:
        dip["n"] = int(_number(t3[("dip", 0.25)].get("n")) or 0)
    row = next((r for r in results.get("table4", []) if r.get("category") == CAUGHT[1]), {})
    dip[CAUGHT[0]] = _number(row.get(CAUGHT[2]))
    return {"threat_model": results.get("threat_model"), "detectors": detectors, "dip": dip}


def spread(values: list[float | None]) -> dict[str, Any]:
    """Mean, sample sd (``None`` below two values), min and max of the values that exist, and their count."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    return {
        "n": len(vals),
        "mean": statistics.fmean(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else None,
        "min": min(vals),
        "max": max(vals),
    }


def spread_rows(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per headline number: its value for each seed (in order) and its :func:`spread` over them."""
    names: list[str] = []
    for entry in per_seed:
        names += [n for n in entry.get("detectors", {}) if n not in names]
    rows = []
    for name in names:
        for number in DETECTOR_NUMBERS:
            values = [entry.get("detectors", {}).get(name, {}).get(number) for entry in per_seed]
            rows.append({"group": "detector", "name": name, "number": number, "values": values, **spread(values)})
    for key, *_ in (*DIP_NUMBERS, CAUGHT):
        values = [entry.get("dip", {}).get(key) for entry in per_seed]
        rows.append({"group": "dip", "name": "dip", "number": key, "values": values, **spread(values)})
    return rows


def seed_numbers(run: RunResults) -> dict[str, Any] | None:
    """``seeds``, ``per_seed`` and ``spread`` of a ``--seeds`` run folder (``None`` for any other run)."""
    record = run.record("seeds")
    if not record:
        return None
    per_seed = []
    for seed in record["seeds"]:
        rel = record.get("runs", {}).get(str(seed), f"seed-{seed}")
        path = run.path(rel) / "report" / "results.json"
        entry: dict[str, Any] = {"seed": seed, "run": rel}
        if path.is_file():
            entry.update(headline(read_record(path)))
        else:
            entry["missing"] = f"{rel}/report/results.json (the seed's run has not finished)"
        per_seed.append(entry)
    return {"seeds": list(record["seeds"]), "per_seed": per_seed, "spread": spread_rows(per_seed)}


def _label(row: dict[str, Any], threat: str) -> str:
    if row["group"] == "detector":
        return f"{row['name']}: " + ("clean accuracy" if row["number"] == "clean_accuracy" else f"robust accuracy at {threat}")
    return next(label for key, *rest, label in (*DIP_NUMBERS, CAUGHT) if key == row["number"])


def _sd(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} pts"


def _range(row: dict[str, Any]) -> str:
    return "–" if row["min"] is None else f"{pct(row['min'])}–{pct(row['max'])}"


def spread_table(numbers: dict[str, Any]) -> Table:
    """The headline numbers per seed with their spread beside them."""
    tm = next((e["threat_model"] for e in numbers["per_seed"] if e.get("threat_model")), None) or {}
    threat = f"{str(tm.get('norm', 'linf')).replace('linf', 'Linf').replace('l2', 'L2')} {tm.get('eps', 0.02):g}"
    t = Table(
        "Headline numbers per seed and their spread over seeds",
        ["number", *(f"seed {s}" for s in numbers["seeds"]), "mean", "sd", "min–max"],
        note="Each seed is a whole run of its own (data, training, attacks, the DIP study) in RUN/seed-N; its values are "
        "that run's report. sd: the sample standard deviation over seeds, in percentage points. Robust accuracy: the "
        "leaderboard's (every bounded attack at the threat model, attacked fakes).",
    )
    for row in numbers["spread"]:
        t.rows.append([_label(row, threat), *map(pct, row["values"]), pct(row["mean"]), _sd(row["sd"]), _range(row)])
    return t


@register_section
class SeedsSection(ReportSection):
    """The spread over seeds (only in the combined report of a ``reproduce --seeds`` run)."""

    name = "seeds"
    title = "Spread over seeds"
    order = 10

    def build(self, run: RunResults) -> Section | None:
        numbers = seed_numbers(run)
        if numbers is None:
            return None
        items: list[Any] = [
            f"Seeds {', '.join(map(str, numbers['seeds']))}: each its own run folder, with its own report "
            f"({', '.join(e['run'] + '/report/report.html' for e in numbers['per_seed'])})."
        ]
        items += [f"Not in the table yet: {e['missing']}." for e in numbers["per_seed"] if e.get("missing")]
        items.append(spread_table(numbers))
        return Section(self.title, items)

    def results(self, run: RunResults) -> Any:
        return seed_numbers(run)
