"""The report fits a page: no table wider than a page shows (wide tables split), figures sized for the page.

The browser test renders the tiny run's report.html in a headless Chromium (Playwright, the ``browser`` extra) at
1,200 px and measures it; it skips when Playwright or a Chromium is absent. The column test needs no browser.

To check a real report instead of the tiny one (a quick or paper run's), point ``DFROBUST_BROWSER_REPORT`` at its
report.html; the tiny run is then not built::

    DFROBUST_BROWSER_REPORT=runs/quick/report/report.html pytest tests/pipeline/test_report_layout.py -k browser

A system Chromium is used when Playwright has none of its own (``DFROBUST_CHROMIUM`` names one, else ``chromium``
on the PATH), so ``pip install dfrobust[browser]`` is enough where a Chromium is installed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from dfrobust.report.tables import MAX_COLUMNS, Table

#: The page width the report must fit, in CSS pixels.
PAGE_WIDTH = 1200


def _header_counts(page: str) -> list[tuple[str, int]]:
    """``(caption, number of columns)`` of every HTML table of a page."""
    out = []
    for m in re.finditer(r"<table><caption>(.*?)</caption><thead><tr>(.*?)</tr></thead>", page, flags=re.S):
        out.append((m.group(1), m.group(2).count("<th>")))
    return out


def test_wide_tables_render_as_parts_that_repeat_their_key_columns() -> None:
    cols = ["model", "n", *(f"c{i}" for i in range(14))]
    t = Table("T", cols, [[f"r{j}", "5", *(f"{j}.{i}" for i in range(14))] for j in range(2)], note="the note", keys=2)
    t.groups = [("first", ["c0", "c1"]), ("second", [f"c{i}" for i in range(2, 12)])]
    parts = t.parts(max_columns=8)
    assert all(len(p.columns) <= 8 and p.columns[:2] == ["model", "n"] for p in parts)
    shown = [c for p in parts for c in p.columns[2:]]
    assert sorted(shown) == sorted(cols[2:]) and len(shown) == len(set(shown))  # every column once
    assert [p.title for p in parts] == ["T: first", "T: second, 1 of 2", "T: second, 2 of 2", "T: more columns"]
    assert parts[1].rows[1] == ["r1", "5", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"]
    assert [p.note for p in parts] == ["", "", "", "the note"]
    assert t.to_html().count("<table>") == 4
    md = t.to_markdown()  # report.md splits the same way
    assert [line for line in md.splitlines() if line.startswith("**")] == [f"**{p.title}**" for p in t.parts()]
    assert len(t.parts()) > 1 and all(line.count("|") - 1 <= MAX_COLUMNS for line in md.splitlines() if line.startswith("|"))
    assert md.count("_the note_") == 1
    small = Table("S", ["a", "b"], [["1", "2"]])
    assert small.parts() == [small] and small.to_html().count("<table>") == 1


def test_the_reports_tables_fit_a_page(built_run: Path) -> None:
    md = (built_run / "report" / "report.md").read_text()
    widest = max(line.count("|") - 1 for line in md.splitlines() if line.startswith("|"))
    assert widest <= MAX_COLUMNS, widest  # report.md's wide tables split as the HTML ones do
    page = (built_run / "report" / "report.html").read_text()
    counts = _header_counts(page)
    assert counts and all(n <= MAX_COLUMNS for _, n in counts), [c for c in counts if c[1] > MAX_COLUMNS]
    captions = [c for c, _ in counts]
    assert any(c.startswith("Defense leaderboard") and c.endswith(": robustness") for c in captions)
    assert any(c.startswith("Table II.") and "the paper" in c for c in captions)


def _chromium(playwright):  # noqa: ANN001, ANN202
    """Playwright's own Chromium, else a system one (``DFROBUST_CHROMIUM`` or ``chromium`` on the PATH); None if none starts."""
    try:
        return playwright.chromium.launch()
    except Exception:  # noqa: BLE001 - Playwright's browser not installed: try a system one
        pass
    for name in (os.environ.get("DFROBUST_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name) if name else None
        if exe:
            try:
                return playwright.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            except Exception:  # noqa: BLE001 - a broken browser: try the next, then skip
                continue
    return None


#: The report the browser test renders instead of the tiny run's (a path to a report.html).
REPORT_ENV = "DFROBUST_BROWSER_REPORT"


def _report_page(request: pytest.FixtureRequest) -> Path:
    """``$DFROBUST_BROWSER_REPORT`` when set (an error when it is no file), else the tiny run's report.html (built once)."""
    given = os.environ.get(REPORT_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            pytest.fail(f"{REPORT_ENV}={given}: no such report file")
        return path
    return request.getfixturevalue("built_run") / "report" / "report.html"


def test_the_report_fits_1200_px_in_a_browser(request: pytest.FixtureRequest) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install dfrobust[browser])")
    report = _report_page(request)
    with sync_api.sync_playwright() as p:
        browser = _chromium(p)
        if browser is None:
            pytest.skip("no Chromium for Playwright (run `playwright install chromium`, or set DFROBUST_CHROMIUM)")
        try:
            page = browser.new_page(viewport={"width": PAGE_WIDTH, "height": 900})
            page.goto(report.resolve().as_uri())
            m = page.evaluate(
                """() => ({
                  doc: document.documentElement.scrollWidth, view: window.innerWidth,
                  tables: [...document.querySelectorAll('table')].map(t => ({
                    caption: t.caption ? t.caption.textContent : '', width: t.scrollWidth,
                    room: t.parentElement.clientWidth})),
                  figures: [...document.querySelectorAll('figure img')].map(i => ({
                    alt: i.alt.slice(0, 40), width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height,
                    natural: i.naturalWidth}))
                })"""
            )
        finally:
            browser.close()
    assert m["doc"] <= m["view"], f"the page scrolls sideways: {m['doc']} > {m['view']} px"
    wide = [t for t in m["tables"] if t["width"] > t["room"]]
    assert not wide, f"tables wider than the page: {wide}"
    assert m["figures"]
    for f in m["figures"]:
        assert f["width"] <= m["view"], f
        # shrunk no more than to 60% of its drawn size (labels stay legible), and no strip flatter than 4:1
        assert f["width"] >= 0.6 * min(f["natural"], m["view"]) - 1, f
        assert 120 <= f["height"] <= 1400 and f["width"] / f["height"] <= 4.0, f
