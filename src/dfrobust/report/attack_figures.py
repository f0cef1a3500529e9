"""Figures of the attack stage: the paper's Fig 3 (clean vs perturbed accuracy per model and setting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dfrobust.attacks.base import attack_display, attack_info
from dfrobust.report.plotting import plt, save_figure
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

    n_models, n_series = len(wide), len(columns)
    per = 2 if paper else 1  # ours, then the paper's beside it
    width = 0.8 / max(n_series * per, 1)
    fig, ax = plt.subplots(figsize=(max(9.0, 1.2 + n_models * n_series * per * 0.42), 3.8), dpi=120)
    cmap = plt.get_cmap("tab10")
    for j, col in enumerate(columns):
        for k in range(per):
            xs = [i + (j * per + k - (n_series * per - 1) / 2) * width for i in range(n_models)]
            if k == 0:
                heights = [100 * float(e[col]) if col in e else math.nan for e in wide]
                style = {"label": series_label(col), "color": cmap(j % 10), "edgecolor": "black", "linewidth": 0.6}
            else:
                heights = [v if (v := (paper or {}).get(e["model"], {}).get(col)) is not None else math.nan for e in wide]
                style = {
                    "label": "the paper's value (hatched)" if j == 0 else None,
                    "color": "white",
                    "edgecolor": cmap(j % 10),
                    "hatch": "///",
                    "linewidth": 0.8,
                }
            # a 0% bar is drawn as its outline on the axis, and every bar carries its value
            bars = ax.bar(xs, [max(h, 0.4) if not math.isnan(h) else h for h in heights], width=width * 0.95, **style)
            ax.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.0f}" for h in heights], fontsize=6, padding=1)
    ax.set_xticks(range(n_models), [e["model"] for e in wide])
    ax.set_ylim(0, 110)
    ax.set_ylabel("Accuracy on fake images (%)" if only_fakes else "Accuracy on attacked images (%)")
    ax.set_title(title or "Adversarial attack results (clean vs perturbed)", fontsize=9)
    ax.legend(fontsize=7, ncol=min(3, n_series), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
