"""Matplotlib set-up shared by every figure module: a file-only backend and atomic PNG saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are only ever written to files
import matplotlib.pyplot as plt  # noqa: E402

from dfrobust.utils.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` as PNG (atomically: a reader never sees half a file) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


#: The widest a figure is drawn (inches at the report's 100-120 dpi: about the 1,100 px of the page): a figure with
#: more panels than fit on one row wraps them onto more rows (small multiples) instead of growing into a long strip.
PAGE_INCHES = 10.5


def panel_grid(n: int, panel_width: float, panel_height: float, max_columns: int | None = None) -> tuple[plt.Figure, list[Any]]:
    """A figure of ``n`` panels in a grid no wider than :data:`PAGE_INCHES`, rows filled evenly; unused cells are hidden.

    Returns the figure and its ``n`` axes, row by row (one, empty, when ``n`` is 0).
    """
    n = max(1, n)
    fit = max(1, int(PAGE_INCHES // panel_width))
    cols = max(1, min(n, fit, max_columns or fit))
    rows = -(-n // cols)
    cols = -(-n // rows)  # rows as even as they can be: 8 panels as 4 + 4, not 6 + 2
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_width, rows * panel_height), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]
