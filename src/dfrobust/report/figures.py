"""Figures of the report that combine stages: Fig 2 (sample images) and Fig 4 (regularisation)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from dfrobust.report.plotting import panel_grid, plt, save_figure


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


def plot_fig4(
    bars: Mapping[str, Mapping[str, float | None]],
    path: str | Path,
    paper: Mapping[str, Mapping[str, float | None]] | None = None,
) -> Path:
    """Fig 4: accuracy of the unregularised ResNet vs the average and best regularised ones.

    Args:
        bars: ``{series: {column: accuracy fraction or None}}``, e.g. series ``unregularised``,
            ``regularised (average)``, ``regularised (best)`` and columns ``unperturbed``,
            ``FGSM blackbox`` ...
        path: where the PNG goes.
        paper: the same layout with the paper's values in percent; drawn hatched beside ours.
    """
    series = list(bars)
    columns = list(dict.fromkeys(c for s in series for c in bars[s]))
    # small multiples: one panel per column (attack and setting), the series side by side in each
    per = 2 if paper else 1
    width = 0.8 / per
    fig, axes = panel_grid(len(columns), 2.1, 1.9)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(j) for j in range(len(series))]
    for ax, c in zip(axes, columns):
        for k in range(per):
            xs = [j + (k - (per - 1) / 2) * width for j in range(len(series))]
            if k == 0:
                hs = [100 * v if (v := bars[s].get(c)) is not None else math.nan for s in series]
                style: dict = {"color": colors, "edgecolor": "black", "linewidth": 0.6}
            else:
                hs = [v if (v := (paper or {}).get(s, {}).get(c)) is not None else math.nan for s in series]
                style = {"color": "white", "edgecolor": colors, "hatch": "///", "linewidth": 0.8}
            # a 0% bar is drawn as its outline on the axis, and every bar carries its value
            b = ax.bar(xs, [max(h, 0.4) if not math.isnan(h) else h for h in hs], width=width * 0.95, **style)
            ax.bar_label(b, labels=["" if math.isnan(h) else f"{h:.0f}" for h in hs], fontsize=6, padding=1)
        ax.set_xticks([])
        ax.set_xlim(-0.6, len(series) - 0.4)  # every series keeps its place, drawn or not
        ax.set_ylim(0, 112)
        ax.set_title(c, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel("Accuracy on fake images (%)", fontsize=8)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colors[j], edgecolor="black", label=s) for j, s in enumerate(series)]
    if paper and any(paper.values()):
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="///", label="the paper's value"))
    fig.suptitle("Regularisation results (ResNet-18, Lipschitz lambda)", fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))  # room for the legend below the panels
    fig.legend(handles=handles, fontsize=7, ncol=len(handles), loc="lower center", frameon=False)
    return save_figure(fig, path)
