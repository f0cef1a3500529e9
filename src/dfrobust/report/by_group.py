"""Table II broken down by generator, for data read in place with one folder per generator.

A user's folder like ``test/progan/0_real`` + ``test/stylegan/1_fake`` gives each image a
``group``; the attack stages carry it into ``results.csv``. A detector that holds on one
generator's fakes may fall on another's, so the report shows one row per detector and generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dfrobust.report.attack_figures import column_order, series_label
from dfrobust.report.study_tables import own_n
from dfrobust.report.tables import Table, rate
from dfrobust.studies.attack_tables import table2_counts, table2_rows, table2_wide


def group_rows(attack_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table II's long rows (:func:`~dfrobust.studies.attack_tables.table2_rows`) per generator, each with its ``group``.

    Empty when no attacked image has a group (a dfrobust dataset, or a folder without generators).
    """
    groups = sorted({str(r["group"]) for r in attack_rows if r.get("group")})
    out = []
    for g in groups:
        out += [{**row, "group": g} for row in table2_rows([r for r in attack_rows if r.get("group") == g])]
    return out


def group_table(rows: Sequence[Mapping[str, Any]], order: Sequence[str]) -> Table:
    """One row per detector (in ``order``) and generator: n, unperturbed and every attack column, with intervals."""
    wide: dict[tuple[str, str], dict[str, Any]] = {}
    n_of: dict[tuple[str, str], dict[str, int]] = {}  # n per cell: an attack may run on fewer images
    for g in sorted({str(r["group"]) for r in rows}):
        mine = [r for r in rows if r["group"] == g]
        for entry in table2_wide(mine):
            wide[(entry["model"], g)] = entry
        for model, counts in table2_counts(mine).items():
            n_of[(model, g)] = counts
    columns = ["unperturbed", *sorted({k for e in wide.values() for k in e if k not in ("model", "unperturbed")}, key=column_order)]
    t = Table(
        "Table II by generator: accuracy on the attacked fakes of each generator",
        ["model / generator", "n", *(series_label(c) for c in columns)],
        note="The images' generator is their folder (test/GENERATOR/1_fake). n: attacked fakes of that generator; "
        "[low–high]: Wilson 95% interval.",
    )
    for model in order:
        for (m, g), entry in wide.items():
            if m == model:
                n = n_of[(m, g)]
                t.rows.append(
                    [
                        f"{m} / {g}",
                        str(n["unperturbed"]),
                        *(rate(entry[c], n.get(c)) + own_n(n.get(c), n["unperturbed"]) if c in entry else "–" for c in columns),
                    ]
                )
    return t
