"""The spread over seeds: each seed's headline numbers and their mean, sd, min and max (``reproduce --seeds``).

A ``--seeds`` run folder holds one run per seed (``RUN/seed-N``) and ``RUN/seeds.json``; its
combined report (:mod:`dfrobust.report.seeds_report`) passes that record as the plan's ``seeds``
entry. This section reads each seed's own ``report/results.json`` (never recomputes it) and takes
its headline numbers: per leaderboard row (detector or defense) and per Table I detector the
clean accuracy and the robust accuracy at the study's threat model, and the DIP study's accuracy at threshold 0.25 beside the
undefended detector at 0.5, its real recall and the share of fooled fakes it catches. Beside them, every
Table I, Table II and leaderboard row over the seeds (:func:`rows_over_seeds`): each rate per seed, its
mean, sd and min-max, and where the rate has a count, the pooled rate with its Wilson 95% interval.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from collections.abc import Mapping
from dataclasses import dataclass

from dfrobust.attacks.base import attack_display
from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.report.attack_figures import setting_label
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


@dataclass(frozen=True)
class RowTable:
    """A table of a seed's ``results.json`` whose rows are followed over the seeds.

    Attributes:
        title: the table's name in the report.
        keys: the fields that name a row (the same row in every seed's run).
        rates: each numeric rate of a row -> the field holding its count (``None``: none; a ``<rate>_n`` field of
            the row, where results.json has one, is the rate's own count and comes first).
        shown: the rates the report's table shows (results.json has them all).
    """

    title: str
    keys: tuple[str, ...]
    rates: Mapping[str, str | None]
    shown: tuple[str, ...]


#: The rows followed over seeds, by their key in results.json. The leaderboard's per-attack whitebox columns are
#: Table II's whitebox rows; its training cost and input-gradient norm are no rates.
ROW_TABLES = {
    "table1": RowTable(
        "Table I over seeds",
        ("model", "group"),
        {"accuracy": "n", "auroc": None, "fake_precision": None, "fake_recall": None, "real_precision": None, "real_recall": None},
        ("accuracy", "auroc"),
    ),
    "table2": RowTable(
        "Table II over seeds (accuracy on attacked fakes)",
        ("model", "attack", "setting", "source", "images"),
        {"clean_accuracy": "n", "perturbed_accuracy": "n", "success_rate_on_correct": "n_correct"},
        ("perturbed_accuracy",),
    ),
    "leaderboard": RowTable(
        "Defense leaderboard over seeds",
        ("defense",),
        {"robust_accuracy": "n_robust", "clean_accuracy": "n_test", "auroc": None, "worst_whitebox": None, "blackbox": None,
         "adaptive": None, "nonadaptive_accuracy": None},
        ("robust_accuracy", "clean_accuracy"),
    ),
}  # fmt: skip


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


def pooled(values: list[float | None], counts: list[Any]) -> dict[str, Any] | None:
    """The rate of all seeds' images together: ``k`` (each seed's rate times its count, rounded) over ``n``, with
    its Wilson 95% interval; ``None`` when no seed has the rate or one that has it lacks its count."""
    k = n = 0
    for value, count in zip(values, counts):
        if value is None:
            continue
        c = _number(count)
        if c is None or c <= 0:
            return None
        k, n = k + round(value * c), n + int(c)
    if not n:
        return None
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n, "interval": [lo, hi]}


def rows_over_seeds(table: str, results: Mapping[int, Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """Every row of ``table`` (a key of :data:`ROW_TABLES`) over the seeds' ``results.json`` (``None``: not finished).

    Per row: its key fields, ``label``, ``per_seed`` (rate -> {seed: value}, ``None`` where a seed lacks the row or
    the rate) and ``spread`` (rate -> :func:`spread` of the values, plus ``pooled``: :func:`pooled`). Rows are in the
    order the seeds first show them.
    """
    spec = ROW_TABLES[table]
    found: dict[tuple[Any, ...], dict[int, Mapping[str, Any]]] = {}
    for seed, res in results.items():
        for row in (res or {}).get(table) or []:
            found.setdefault(tuple(row.get(k) for k in spec.keys), {})[seed] = row
    out = []
    for key, by_seed in found.items():
        first = next(iter(by_seed.values()))
        entry: dict[str, Any] = {k: v for k, v in zip(spec.keys, key) if v is not None}
        entry["label"] = first.get("label") or first.get("model") or first.get("defense")
        entry["per_seed"], entry["spread"] = {}, {}
        for rate, count in spec.rates.items():
            values = [_number((by_seed.get(s) or {}).get(rate)) for s in results]
            entry["per_seed"][rate] = {str(s): v for s, v in zip(results, values)}
            # a rate's own count: `<rate>_n` where results.json records it (schema 3), else the row's count field
            rows = [by_seed.get(s) or {} for s in results]
            counts = [r.get(f"{rate}_n", r.get(count) if count else None) for r in rows]
            has_count = count is not None or any(f"{rate}_n" in r for r in rows)
            entry["spread"][rate] = {**spread(values), "pooled": pooled(values, counts) if has_count else None}
        out.append(entry)
    return out


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
    per_seed, results = [], {}
    for seed in record["seeds"]:
        rel = record.get("runs", {}).get(str(seed), f"seed-{seed}")
        path = run.path(rel) / "report" / "results.json"
        entry: dict[str, Any] = {"seed": seed, "run": rel}
        results[seed] = read_record(path) if path.is_file() else None
        if results[seed] is not None:
            entry.update(headline(results[seed]))
        else:
            entry["missing"] = f"{rel}/report/results.json (the seed's run has not finished)"
        per_seed.append(entry)
    rows = {table: rows_over_seeds(table, results) for table in ROW_TABLES}
    return {"seeds": list(record["seeds"]), "per_seed": per_seed, "spread": spread_rows(per_seed), **rows}


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


#: How a rate is named in the tables over seeds (others: the key with spaces).
RATE_LABELS = {"auroc": "AUROC", "perturbed_accuracy": "accuracy", "robust_accuracy": "robust accuracy"}


def _row_label(table: str, row: Mapping[str, Any]) -> str:
    if table != "table2":
        return str(row["label"])
    attack, setting = str(row.get("attack")), str(row.get("setting"))
    where = f" from {row.get('source')}" if setting == "blackbox" else ""
    return f"{row.get('model')}: {attack_display(attack)} {setting_label(attack, setting)}{where}"


def _pooled(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "–"
    lo, hi = value["interval"]
    return f"{pct(value['rate'])} [{100 * lo:.1f}–{100 * hi:.1f}] (n = {value['n']})"


def rows_table(table: str, rows: list[dict[str, Any]], seeds: list[int]) -> Table:
    """The shown rates of ``rows`` (:func:`rows_over_seeds`): per seed, mean, min-max and the pooled rate beside them."""
    spec = ROW_TABLES[table]
    t = Table(
        spec.title,
        ["row", "number", *(f"seed {s}" for s in seeds), "mean", "min–max", "pooled [95% CI]"],
        note="Mean and min–max: over the seeds' own values (the spread of whole runs: data, training, attacks). Pooled: "
        "every seed's images together, with its Wilson 95% interval, which covers the sampling of images only; "
        "– where a rate has no count (AUROC) or a seed lacks it.",
        keys=2,
    )
    for row in rows:
        for rate in spec.shown:
            sp = row["spread"][rate]
            cells = [pct(row["per_seed"][rate].get(str(s))) for s in seeds]
            t.rows.append([_row_label(table, row), RATE_LABELS.get(rate, rate.replace("_", " ")), *cells,
                           pct(sp["mean"]), _range(sp), _pooled(sp["pooled"])])  # fmt: skip
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
        items += [rows_table(table, numbers[table], numbers["seeds"]) for table in ROW_TABLES if numbers.get(table)]
        return Section(self.title, items)

    def results(self, run: RunResults) -> Any:
        return seed_numbers(run)
