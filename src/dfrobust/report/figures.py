"""Figures of the report that combine stages: Fig 2 (sample images) and Fig 4 (regularisation)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from dfrobust.report.plotting import plt, save_figure


def plot_fig2(rows: Sequence[tuple[str, Sequence[tuple[torch.Tensor, str]]]], path: str | Path) -> Path:
    """Fig 2: a grid of images, one row per kind (real, fake, perturbed ...), each with a caption.

    Args:
        rows: ``(row label, [(image 3 x H x W in [0, 1], caption), ...])`` per row.
        path: where the PNG goes.
    """
    n_cols = max(len(cells) for _, cells in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.9 * n_cols, 2.2 * len(rows)), squeeze=False)
    for r, (label, cells) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(cells):
                img, caption = cells[c]
                ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_title(caption, fontsize=7)
        axes[r][0].text(-0.08, 0.5, label, transform=axes[r][0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fig4(bars: Mapping[str, Mapping[str, float | None]], path: str | Path) -> Path:
    """Fig 4: accuracy of the unregularised ResNet vs the average and best regularised ones.

    Args:
        bars: ``{series: {column: accuracy fraction or None}}``, e.g. series ``unregularised``,
            ``regularised (average)``, ``regularised (best)`` and columns ``unperturbed``,
            ``FGSM blackbox`` ...
        path: where the PNG goes.
    """
    series = list(bars)
    columns = list(dict.fromkeys(c for s in series for c in bars[s]))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(columns) + 1), 3.4))
    cmap = plt.get_cmap("tab10")
    for j, s in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(columns))]
        hs = [100 * v if (v := bars[s].get(c)) is not None else math.nan for c in columns]
        b = ax.bar(xs, hs, width=width * 0.95, label=s, color=cmap(j))
        ax.bar_label(b, labels=["" if math.isnan(h) else f"{h:.0f}" for h in hs], fontsize=6, padding=1)
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("Accuracy on fake images (%)")
    ax.set_title("Regularisation results (ResNet-18, Lipschitz lambda)", fontsize=9)
    ax.legend(fontsize=7, ncol=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
