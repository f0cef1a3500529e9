"""The combined report of a ``reproduce --seeds`` run folder: ``RUN/report/`` over the seeds' own runs.

``RUN/seeds.json`` lists the seeds and their run folders (``RUN/seed-N``, each a whole run with its
own report). :func:`write_seeds_report` builds every registered report section on that record
(the seeds section shows the spread; sections of single runs have nothing to show) and writes
``report.html``, ``report.md``, ``summary.md`` and ``results.json``, whose ``seeds``, ``per_seed``,
``spread`` and the ``table1``, ``table2`` and ``leaderboard`` rows over the seeds (each rate's ``per_seed``
values, their ``spread`` and pooled rate) are the seeds section's numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.report.document import RESULTS_SCHEMA_VERSION, Section, _html, _markdown
from dfrobust.report.sections import RunResults, extra_sections
from dfrobust.report.sections.seeds import ROW_TABLES, seed_numbers, spread_table
from dfrobust.utils.io import atomic_path, read_record, write_json
from dfrobust.utils.runfolder import CONFIG_FILE

#: The record of a ``--seeds`` run folder: ``{"seeds": [...], "runs": {"0": "seed-0", ...}}``.
SEEDS_FILE = "seeds.json"


def read_seeds(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN/seeds.json`` of a ``--seeds`` run folder (``None`` when ``run_dir`` is not one)."""
    path = Path(run_dir) / SEEDS_FILE
    if not path.is_file():
        return None
    record = read_record(path)
    if not isinstance(record.get("seeds"), list):
        raise DfrobustError(f"{path} does not list seeds; restore it or start a new --run")
    return record


def write_seeds_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report/{report.html, report.md, summary.md, results.json}`` of a ``--seeds`` run; returns the folder."""
    run_dir = Path(run_dir)
    record = read_seeds(run_dir)
    if record is None:
        raise DfrobustError(f"{run_dir} is not a --seeds run folder (no {SEEDS_FILE})")
    first = run_dir / record.get("runs", {}).get(str(record["seeds"][0]), f"seed-{record['seeds'][0]}") / CONFIG_FILE
    config = read_record(first).get("config", {}) if first.is_file() else {}
    report_dir = run_dir / "report"
    figs = report_dir / "figs"
    figs.mkdir(parents=True, exist_ok=True)
    run = RunResults(run_dir, report_dir, figs, config, {"seeds": record})
    sections, section_results = extra_sections(run)
    numbers = seed_numbers(run) or {}
    preset = config.get("run", {}).get("preset", "?")
    title = f"dfrobust report: {run_dir.name} (preset {preset}, seeds {', '.join(map(str, record['seeds']))})"
    intro = Section(
        "About",
        [
            "The same study run once per seed, each seed a whole run of its own (its data, training, attacks and DIP "
            "study); every number below comes from those runs' own reports."
        ],
    )
    sections = [intro, *sections]
    with atomic_path(report_dir / "report.md") as tmp:
        tmp.write_text(_markdown(title, sections, report_dir), encoding="utf-8")
    with atomic_path(report_dir / "report.html") as tmp:
        tmp.write_text(_html(title, sections), encoding="utf-8")
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "seeds": numbers.get("seeds", record["seeds"]),
        "runs": record.get("runs", {}),
        "per_seed": numbers.get("per_seed", []),
        "spread": numbers.get("spread", []),
        # every Table I, Table II and leaderboard row with its rates per seed (`per_seed`), their spread and pooled rate
        **{table: numbers.get(table, []) for table in ROW_TABLES},
        "settings": {"config": config, "preset": preset},
        "sections": {k: v for k, v in section_results.items() if k != "seeds"},  # the seeds section's numbers are above
    }
    write_json(report_dir / "results.json", results)
    with atomic_path(report_dir / "summary.md") as tmp:
        tmp.write_text(seeds_summary_markdown(numbers, preset), encoding="utf-8")
    return report_dir


def seeds_summary_markdown(numbers: dict[str, Any], preset: str) -> str:
    """``summary.md`` of a ``--seeds`` run: the headline numbers per seed and their spread, and where each seed's summary is."""
    if not numbers:
        return "No seed has finished yet.\n"
    lines = [spread_table(numbers).to_markdown()]
    lines.append(
        f"Preset `{preset}`, seeds {', '.join(map(str, numbers['seeds']))}; each seed's own summary: "
        + ", ".join(f"{e['run']}/report/summary.md" for e in numbers["per_seed"])
        + "."
    )
    return "\n".join(line.replace("<", "&lt;").replace(">", "&gt;") for line in lines) + "\n"
