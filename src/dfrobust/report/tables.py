"""A small table type rendered to Markdown and HTML, and number formatting for the report."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
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


def md_escape(text: str) -> str:
    """``text`` safe inside Markdown (a table cell or a paragraph): the characters Markdown would act on are escaped."""
    return "".join(_MD_ENTITIES.get(c) or ("\\" + c if c in "\\`*_[]|#" else c) for c in str(text))


#: HTML's own characters as entities: Markdown passes raw HTML through, so a name like ``<img ...>`` must not reach it raw.
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


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
    """

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown."""
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", f"_{md_escape(self.note)}_"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """An HTML ``<table>`` with a caption."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in self.rows)
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return (
            f'<div class="scroll"><table><caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>{note}"
        )
