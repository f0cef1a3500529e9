"""Matplotlib set-up shared by every figure module: a file-only backend and atomic PNG saving."""

from __future__ import annotations

from pathlib import Path

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
