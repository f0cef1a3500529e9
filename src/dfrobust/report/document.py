"""The report as a document: sections of paragraphs, tables and figures, rendered as Markdown and HTML (CSS in ``report.css``)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfrobust.report.tables import Table, md_escape


#: The layout of ``report/results.json`` (``schema_version``): 3 puts beside every rate of its tables that rate's own
#: n and Wilson 95% interval (``<rate>_n``, ``<rate>_ci: [low, high]``, null where there is no count; the leaderboard's
#: n keep their names ``n_test``, ``n_robust``, ``n_whitebox``, ``n_blackbox``, ``n_adaptive``; Table II's wide table
#: has them in ``table2_wide_n`` and ``table2_wide_ci``, same keys); 2 holds every rate as a fraction in [0, 1], the
#: paper's published percentages converted (under ``paper``, labelled as the paper's); 1 (unversioned) mixed them.
RESULTS_SCHEMA_VERSION = 3


@dataclass
class Section:
    """A titled part of the report: paragraphs, tables and figures, in order."""

    title: str
    items: list[Any] = field(default_factory=list)  # str (paragraph), Table, or Figure


@dataclass
class Figure:
    """A PNG in ``report/figs`` with its caption."""

    path: Path
    caption: str


def _md_paragraph(text: str) -> str:
    """A paragraph for Markdown: code spans (between backticks) stay, everything else is escaped."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:
        return "\n".join(md_escape(line) for line in str(text).splitlines())
    return "".join(f"`{p}`" if i % 2 else md_escape(p) for i, p in enumerate(parts))


def _markdown(title: str, sections: list[Section], report_dir: Path) -> str:
    out = [
        f"# {md_escape(title)}",
        "",
        "Contents: " + " · ".join(f"[{md_escape(sec.title)}](#{_anchor(sec.title)})" for sec in sections),
        "",
    ]
    for sec in sections:
        out += [f"## {md_escape(sec.title)}", ""]
        for item in sec.items:
            if isinstance(item, Table):
                out.append(item.to_markdown())
            elif isinstance(item, Figure):
                out += [
                    f"![{md_escape(item.caption)}]({item.path.relative_to(report_dir).as_posix()})",
                    "",
                    f"_{md_escape(item.caption)}_",
                    "",
                ]
            else:
                out += [_md_paragraph(str(item)), ""]
    return "\n".join(out)


def _anchor(title: str) -> str:
    """The id of a section heading (GitHub's Markdown anchors: lower case, spaces to dashes, punctuation dropped)."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


#: The HTML report's style sheet (package data, inlined so the page opens offline).
CSS = (Path(__file__).with_name("report.css")).read_text(encoding="utf-8")


def _html(title: str, sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#{_anchor(sec.title)}">{html.escape(sec.title)}</a></li>' for sec in sections)
    body = [f"<h1>{html.escape(title)}</h1>", f"<nav><ul>{toc}</ul></nav>"]
    for sec in sections:
        body.append(f'<h2 id="{_anchor(sec.title)}">{html.escape(sec.title)}</h2>')
        for item in sec.items:
            if isinstance(item, Table):
                body.append(item.to_html())
            elif isinstance(item, Figure):
                data = base64.b64encode(item.path.read_bytes()).decode()
                img = f'<img alt="{html.escape(item.caption)}" src="data:image/png;base64,{data}">'
                body.append(f"<figure>{img}<figcaption>{html.escape(item.caption)}</figcaption></figure>")
            elif str(item).startswith("- "):
                body.append("<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in str(item).splitlines()) + "</ul>")
            else:
                body.append(f"<p>{html.escape(str(item))}</p>")
    head = (
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
    )
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>\n"
