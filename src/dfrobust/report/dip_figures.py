"""Figures of the DIP study: Fig 5 (one image along the optimisation) and Fig 6 (P(real) over iterations)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfrobust.report.plotting import panel_grid, plt, save_figure


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def plot_fig5(
    input_image: torch.Tensor,
    snapshots: Mapping[int, torch.Tensor],
    out_path: str | Path,
    clean_image: torch.Tensor | None = None,
    p_real: Mapping[int, float] | None = None,
    input_p_real: float | None = None,
    title: str = "",
) -> Path:
    """Fig 5: the input, the generated image at each kept iteration, and the clean image, side by side.

    Args:
        input_image: ``3 x H x W`` image DIP was fitted to (e.g. an FGSM-perturbed fake).
        snapshots: iteration -> ``3 x H x W`` generated image.
        clean_image: the unperturbed image, shown last when given.
        p_real: iteration -> classifier P(real) of the generated image (shown in the titles).
        input_p_real: classifier P(real) of the input.
    """
    panels: list[tuple[str, torch.Tensor]] = [
        ("input" + (f"\nP(real)={input_p_real:.2f}" if input_p_real is not None else ""), input_image)
    ]
    for it in sorted(snapshots):
        score = f"\nP(real)={p_real[it]:.2f}" if p_real and it in p_real else ""
        panels.append((f"iteration {it:,}{score}", snapshots[it]))
    if clean_image is not None:
        panels.append(("clean", clean_image))
    fig, axes = panel_grid(len(panels), 1.9, 2.3)  # wraps onto rows at page width: no long strip
    for ax, (label, img) in zip(axes, panels):
        ax.imshow(_hwc(img), interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, out_path)


@dataclass
class CurvePanel:
    """One panel of Fig 6: P(real) of the generated image over iterations for one image."""

    title: str
    iterations: Sequence[int]
    raw: Sequence[float]
    window: Sequence[float]


def plot_fig6(
    panels: Sequence[CurvePanel | None],
    out_path: str | Path,
    threshold: float = 0.5,
    classify_at: int | None = None,
) -> Path:
    """Fig 6: per panel, P(real) at each recorded iteration (grey) and its window average (red).

    A dashed line marks the threshold, a dotted one the classification iteration. ``None``
    panels (no image of that kind in the study) are drawn empty with a note.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False, sharey=True)
    for ax, panel in zip(axes[0], panels):
        ax.set_ylim(-0.03, 1.03)
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label=f"threshold {threshold:g}")
        if panel is None:
            ax.text(0.5, 0.5, "no such image\nin this study", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            continue
        ax.plot(panel.iterations, panel.raw, color="0.6", linewidth=0.8, label="single iteration")
        ax.plot(panel.iterations, panel.window, color="tab:red", linewidth=1.2, label="window average")
        if classify_at is not None:
            ax.axvline(classify_at, color="tab:blue", linestyle=":", linewidth=0.9, label=f"T = {classify_at:,}")
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel("iteration")
    axes[0][0].set_ylabel("P(real)")
    drawn = [ax for ax, panel in zip(axes[0], panels) if panel is not None] or [axes[0][0]]
    handles, labels = drawn[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.16))
    return save_figure(fig, out_path)


def draw_dip_figures(study_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Draw Figs 5 and 6 of a DIP study folder from its ``figures.json``; returns ``{"fig5": path, "fig6": path}``."""
    from dfrobust.utils.io import load_image, read_json

    study_dir, out_dir = Path(study_dir), Path(out_dir)
    data_file = study_dir / "figures.json"
    if not data_file.is_file():
        return {}
    data = read_json(data_file)
    f6 = data["fig6"]
    panels = [CurvePanel(p["title"], p["iterations"], p["raw"], p["window"]) if p else None for p in f6["panels"]]
    out = {"fig6": plot_fig6(panels, out_dir / "fig6.png", threshold=f6["threshold"], classify_at=f6["classify_at"])}
    f5 = data["fig5"]
    snaps = {int(t): load_image(study_dir / p) for t, p in f5["snapshots"].items() if (study_dir / p).is_file()}
    out["fig5"] = plot_fig5(
        load_image(study_dir / f5["input"]),
        snaps,
        out_dir / "fig5.png",
        load_image(study_dir / f5["clean"]),
        {int(t): v for t, v in f5["p_real"].items()},
        f5["input_p_real"],
        title=f5["title"],
    )
    return out
