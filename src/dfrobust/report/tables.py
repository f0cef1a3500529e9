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
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", f"_{self.note}_"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """An HTML ``<table>`` with a caption."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in self.rows)
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return f"<table><caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
