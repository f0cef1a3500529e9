"""A small table type rendered to Markdown and HTML, and number formatting for the report."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any


def pct(value: Any, digits: int = 1) -> str:
    """Format a fraction in [0, 1] as a percentage; blanks for missing values."""
    if value is None or value == "":
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:  # NaN
        return "–"
    return f"{100 * v:.{digits}f}%"


def rate(value: Any, n: Any, digits: int = 1) -> str:
    """A rate with its Wilson 95% interval, ``5.0% [0.9–23.6]``, when ``n`` < 1,000 (the share is ``value``)."""
    from dfrobust.evaluate.intervals import wilson_interval

    text = pct(value, digits)
    try:
        v, count = float(value), int(float(n))
    except (TypeError, ValueError):
        return text
    if v != v or count <= 0 or count >= 1000:
        return text
    lo, hi = wilson_interval(round(v * count), count)
    return f"{text} [{100 * lo:.{digits}f}–{100 * hi:.{digits}f}]"


#: The one definition of an attack's success that every table and rate of the report counts (docs/architecture.md).
SUCCESS_DEFINITION = (
    "An attack succeeds on an image when the detector, re-evaluated on the stored 8-bit PNG of the attacked image, "
    "gets it wrong (a fake passed as real); every accuracy under attack, success rate and interval in this report "
    "counts that, the robustness curves included (Table V's 'any iterate' rule alone looks at the attack's float "
    "iterates, as DiffPure's rule does). The attack's own verdict on its float image before rounding (results.csv's success_float) can count "
    "more, since rounding to 8 bits can undo a flip; it is kept for diagnostics and enters no table."
)


def interval(value: Any, n: Any) -> list[float] | None:
    """The Wilson 95% interval ``[low, high]`` of a rate ``value`` over ``n`` items (``None`` when either is missing).

    The count behind the rate is ``round(value * n)``, as :func:`rate` prints it, so results.json and the tables agree.
    """
    from dfrobust.evaluate.intervals import wilson_interval

    try:
        v, count = float(value), int(float(n))
    except (TypeError, ValueError):
        return None
    if v != v or count <= 0:
        return None
    return list(wilson_interval(round(v * count), count))


def with_intervals(row: Mapping[str, Any], rates: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with ``<key>_n`` and ``<key>_ci`` (:func:`interval`) beside each rate ``key`` of ``rates`` (``key -> n``).

    results.json's convention (schema_version 3): every rate of a table carries its own n and Wilson 95% interval.
    """
    out = dict(row)
    for key, n in rates.items():
        if key in row:
            count = None if n in (None, "") or row[key] in (None, "") else int(float(n))
            out[f"{key}_n"], out[f"{key}_ci"] = count, interval(row[key], count)
    return out


def md_escape(text: str) -> str:
    """``text`` safe inside Markdown (a table cell or a paragraph): the characters Markdown would act on are escaped."""
    return "".join(_MD_ENTITIES.get(c) or ("\\" + c if c in "\\`*_[]|#" else c) for c in str(text))


#: HTML's own characters as entities: Markdown passes raw HTML through, so a name like ``<img ...>`` must not reach it raw.
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


#: The most columns one rendered HTML table shows: a wider table renders as parts that each repeat its key columns,
#: so that no column hides in a scroll box at a 1,200 px page.
MAX_COLUMNS = 10


def paper_pct(value: float | None) -> str:
    """Format one of the paper's numbers (already in percent)."""
    return "–" if value is None else f"{value:.1f}%"


@dataclass
class Table:
    """A titled table of already-formatted cells.

    Attributes:
        title: heading shown above the table.
        columns: column headers.
        rows: rows of cells (strings).
        note: a line shown under the table (sources, caveats).
        keys: how many leading columns identify a row (repeated in every part of a split table).
        groups: how the other columns split when the table is too wide for a page: ``(part name, column names)``
            in order; columns named in no group form a last part. Empty: split in order, as few parts as fit.
    """

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    keys: int = 1
    groups: list[tuple[str, list[str]]] = field(default_factory=list)

    def parts(self, max_columns: int = MAX_COLUMNS) -> list[Table]:
        """The table as one or more tables of at most ``max_columns`` columns each (its key columns in every one).

        A table that fits, and has no ``groups``, is returned whole. The note goes under the last part.
        """
        keys = max(0, min(self.keys, len(self.columns) - 1))
        if len(self.columns) <= max_columns and not self.groups:
            return [self]
        index = {c: i for i, c in enumerate(self.columns)}
        named = [(name, [index[c] for c in cols if c in index and index[c] >= keys]) for name, cols in self.groups]
        seen = {i for _, cols in named for i in cols}
        rest = [i for i in range(keys, len(self.columns)) if i not in seen]
        if rest:
            named.append(("more columns" if named else "", rest))
        width = max(1, max_columns - keys)
        chunks: list[tuple[str, list[int]]] = []
        for name, cols in named:
            if not cols:
                continue
            pieces = [cols[i : i + width] for i in range(0, len(cols), width)]
            for j, piece in enumerate(pieces):
                label = name if len(pieces) == 1 else f"{name}, {j + 1} of {len(pieces)}" if name else f"{j + 1} of {len(pieces)}"
                chunks.append((label, piece))
        if len(chunks) <= 1 and len(self.columns) <= max_columns:
            return [self]
        out = []
        for k, (label, cols) in enumerate(chunks):
            pick = list(range(keys)) + cols
            out.append(
                Table(
                    f"{self.title.rstrip('.')}: {label}" if label else self.title,
                    [self.columns[i] for i in pick],
                    [[row[i] if i < len(row) else "" for i in pick] for row in self.rows],
                    note=self.note if k == len(chunks) - 1 else "",
                    keys=keys,
                )
            )
        return out

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: one table, or the :meth:`parts` of a table too wide for a page (as in HTML)."""
        parts = self.parts()
        if len(parts) > 1:
            return "\n".join(p.to_markdown() for p in parts)
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", f"_{md_escape(self.note)}_"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """HTML ``<table>``s with captions: one, or the :meth:`parts` of a table too wide for a page."""
        parts = self.parts()
        if len(parts) > 1:
            return "".join(p.to_html() for p in parts)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in self.rows)
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return (
            f'<div class="scroll"><table><caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>{note}"
        )
