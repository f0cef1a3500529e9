"""Figures of the attack stage: the paper's Fig 3 (clean vs perturbed accuracy per model and setting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dfrobust.attacks.base import attack_display, attack_info
from dfrobust.report.plotting import PAGE_INCHES, panel_grid, plt, save_figure
from dfrobust.studies.attack_tables import ENSEMBLE_SOURCE, table2_wide


def _parse_column(column: str) -> tuple[str, str, str]:
    """``fgsm_blackbox_from_vgg16`` -> ``("fgsm", "blackbox", "vgg16")`` (source empty when absent)."""
    head, _, source = column.partition("_from_")
    attack, _, setting = head.rpartition("_")
    return attack, setting, source


#: How an attack run on the detector itself is named, by what it needs of the model (``AttackInfo.access``):
#: a score-based attack (Square) queries the detector's scores only, so it is a black-box attack, not a whitebox one.
ACCESS_SETTING = {"gradient": "whitebox", "transfer": "whitebox", "score": "score-based black-box"}


def setting_label(attack: str, setting: str) -> str:
    """``whitebox`` for a gradient attack on the detector itself, ``score-based black-box`` for a score-based one;
    ``blackbox`` (the paper's word for a transfer from another detector) stays."""
    return ACCESS_SETTING.get(attack_info(attack).access, setting) if setting == "whitebox" else setting


def series_label(column: str) -> str:
    """``cw_whitebox`` -> ``CW-L2 whitebox``; ``fgsm_blackbox_from_vgg16`` -> ``FGSM blackbox (from vgg16)``;
    ``dimifgsm_blackbox_from_ensemble`` -> ``DI-MI-FGSM blackbox from ensemble``; ``square-linf_whitebox`` ->
    ``SQUARE-LINF score-based black-box`` (the attack's declared access)."""
    if column == "unperturbed":
        return "Unperturbed"
    attack, setting, source = _parse_column(column)
    label = f"{attack_display(attack)} {setting_label(attack, setting)}"
    if source == ENSEMBLE_SOURCE:
        return f"{label} from ensemble"
    return f"{label} (from {source})" if source else label


def column_order(column: str) -> tuple:
    """The paper's order: FGSM before CW (then other attacks by name), blackbox before whitebox."""
    attack, setting, source = _parse_column(column)
    rank = attack_info(attack).rank(attack)  # declared with @register_attack(order=...)
    return rank, attack, setting != "blackbox", setting, source


def plot_fig3(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    title: str | None = None,
    paper: Mapping[str, Mapping[str, float | None]] | None = None,
) -> Path:
    """Draw the paper's Fig 3 from Table II rows and save it as PNG (atomically).

    Args:
        rows: :func:`dfrobust.studies.attack_tables.table2_rows` output (one or several attack folders).
        path: where the PNG goes.
        title: figure title (default: the paper's caption, shortened).
        paper: model -> column -> the paper's accuracy in percent; drawn hatched beside ours.

    One group of bars per model: unperturbed accuracy, then accuracy on perturbed images for
    every attack and setting present, in percent.
    """
    wide = table2_wide(rows)
    columns: list[str] = ["unperturbed"]
    for entry in wide:
        columns += [k for k in entry if k not in ("model", "unperturbed") and k not in columns]
    columns = ["unperturbed"] + sorted(columns[1:], key=column_order)
    only_fakes = all(r.get("images", "fake") == "fake" for r in rows)

    # small multiples: one panel per model (bars: unperturbed, then each attack), wrapped onto rows at page width
    per = 2 if paper else 1  # ours, then the paper's beside it
    n_series = len(columns)
    panel_width = min(PAGE_INCHES, max(3.4, 0.9 + 0.38 * n_series * per))
    fig, axes = panel_grid(len(wide), panel_width, 3.0)
    cmap = plt.get_cmap("tab10")
    width = 0.8 / per
    for ax, entry in zip(axes, wide):
        for k in range(per):
            xs = [j + (k - (per - 1) / 2) * width for j in range(n_series)]
            if k == 0:
                heights = [100 * float(entry[c]) if c in entry else math.nan for c in columns]
                style: dict[str, Any] = {"color": [cmap(j % 10) for j in range(n_series)], "edgecolor": "black", "linewidth": 0.6}
            else:
                heights = [v if (v := (paper or {}).get(entry["model"], {}).get(c)) is not None else math.nan for c in columns]
                style = {"color": "white", "edgecolor": [cmap(j % 10) for j in range(n_series)], "hatch": "///", "linewidth": 0.8}
            # a 0% bar is drawn as its outline on the axis, and every bar carries its value
            bars = ax.bar(xs, [max(h, 0.4) if not math.isnan(h) else h for h in heights], width=width * 0.95, **style)
            ax.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.0f}" for h in heights], fontsize=6, padding=1)
        ax.set_xticks(range(n_series), [series_label(c) for c in columns], rotation=35, ha="right", fontsize=7)
        ax.set_ylim(0, 112)
        ax.set_title(entry["model"], fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel("Accuracy on fake images (%)" if only_fakes else "Accuracy on attacked images (%)", fontsize=8)
    fig.suptitle(title or "Adversarial attack results (clean vs perturbed)", fontsize=10)
    if paper and any(paper.values()):
        from matplotlib.patches import Patch

        handles = [
            Patch(facecolor="0.7", edgecolor="black", label="this run"),
            Patch(facecolor="white", edgecolor="0.3", hatch="///", label="the paper's value"),
        ]
        fig.tight_layout(rect=(0, 0.3 / fig.get_figheight(), 1, 1))  # room for the legend below the panels
        fig.legend(handles=handles, fontsize=7, ncol=2, loc="lower center", frameon=False)
    else:
        fig.tight_layout()
    return save_figure(fig, path, dpi=100)
