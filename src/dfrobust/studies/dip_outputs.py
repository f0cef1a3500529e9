"""The DIP study's outputs: trajectories, predictions, Tables III/IV, the sweep and the data of Figs 5/6 (:func:`merge_study`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfrobust.constants import CLASS_NAMES
from dfrobust.defenses.base import make_purifier
from dfrobust.defenses.dip_parts import snapshot_path
from dfrobust.defenses.dip_sampling import CLEAN_FAKE, CLEAN_REAL, StudyItem
from dfrobust.defenses.transforms import transform_purifiers
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import model_name
from dfrobust.studies.dip_config import DipStudyConfig
from dfrobust.studies.dip_selection import StudyInputs, batched_p_real
from dfrobust.studies.dip_tables import TABLE3_COLUMNS, sweep_points, sweep_rows, table3_rows, table4_rows, window_mean
from dfrobust.utils.io import save_png, write_csv, write_json
from dfrobust.utils.runtime import versions

#: Columns of ``trajectories.csv``.
TRAJECTORY_COLUMNS = ["image", "category", "iteration", "p_real_raw", "p_real_avg", "mse_input", "psnr_input", "psnr_clean"]


def merge_study(
    study: StudyInputs,
    curves: dict,
    model: torch.nn.Module,
    model_path: Path,
    out_dir: Path,
    cfg: DipStudyConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Write trajectories, predictions, Tables III/IV, the sweep and the figure data; return the summary."""
    items = study.items
    iterations = curves[items[0].key].iterations
    if cfg.t not in iterations:
        raise DfrobustError(f"iteration {cfg.t} was not recorded; use a --classify-at that is a multiple of --record-every")
    ti = iterations.index(cfg.t)
    stacked = {name: torch.stack([curves[it.key].curves[name] for it in items]).numpy() for name in curves[items[0].key].curves}
    raw, avg = stacked["p_real_raw"], stacked["p_real_avg"]
    win = window_mean(raw, cfg.window)
    labels = np.array([it.label for it in items])
    categories = [it.category for it in items]

    scores: dict[str, np.ndarray] = {
        "baseline": np.array([it.baseline_p_real for it in items]),
        "dip": raw[:, ti],
        "dip-window": win[:, ti],
        "dip-ema": avg[:, ti],
    }
    early = "es_p_real" in stacked  # dip.early_stop: each image's output at its ES-WMV stopping point
    if early:
        scores["dip-es"] = stacked["es_p_real"]
    if cfg.transforms:
        baselines = transform_purifiers(study.inputs.shape[-1], cfg.jpeg_quality, cfg.blur_sigma)
        for name in cfg.purifiers:
            purifier = baselines.get(name) or make_purifier(name)
            scores[name] = batched_p_real(model, purifier(study.inputs)).numpy()

    write_csv(out_dir / "trajectories.csv", _trajectory_rows(items, iterations, stacked), TRAJECTORY_COLUMNS)
    pred_rows = [
        {"image": it.image, "category": it.category, "label": CLASS_NAMES[it.label], "source": it.source, "seed": it.seed,
         **{f"{m}_p_real": float(s[i]) for m, s in scores.items()},
         "psnr_input_at_t": float(stacked["psnr_input"][i, ti]),
         "psnr_clean_at_t": float(stacked["psnr_clean"][i, ti]) if "psnr_clean" in stacked else "",
         **({"es_iteration": int(stacked["es_iteration"][i]), "es_stopped_at": int(stacked["es_stopped_at"][i]),
             "psnr_clean_at_es": float(stacked["es_psnr_clean"][i]) if "es_psnr_clean" in stacked else ""} if early else {})}
        for i, it in enumerate(items)
    ]  # fmt: skip
    write_csv(out_dir / "predictions.csv", pred_rows)
    table3 = table3_rows(labels, scores, cfg.thresholds)
    write_csv(out_dir / "table3.csv", table3, TABLE3_COLUMNS)
    table4 = table4_rows(categories, labels, scores, cfg.thresholds, cfg.per_category, order=list(study.candidates))
    write_csv(out_dir / "table4.csv", table4)
    points = sweep_points(cfg.dip.iterations, cfg.end, cfg.dip.record_every)
    sweep = sweep_rows(iterations, labels, {"dip": raw, "dip-window": win, "dip-ema": avg}, points, cfg.thresholds)
    write_csv(out_dir / "sweep.csv", sweep)
    figures = _figure_data(study, iterations, raw, win, out_dir, cfg)

    seconds = sum(curves[it.key].seconds for it in items)
    summary_es = early_stop_summary(stacked, cfg) if early else None
    return {
        "complete": True,
        "config": dataclasses.asdict(cfg),
        "model": {"name": model_name(model_path), "path": str(model_path)},
        "attacks": {a.name: {"path": str(a.path), "target": a.target} for a in study.attacks},
        "classify_at": cfg.t,
        "iterations_run": cfg.end,
        "n_images": len(items),
        "categories": {
            c: {"n": categories.count(c), "requested": cfg.per_category, "candidates": study.candidates.get(c, 0)}
            for c in dict.fromkeys(categories)
        },
        "shortfalls": {c: cfg.per_category - n for c, n in ((c, categories.count(c)) for c in study.candidates) if n < cfg.per_category},
        "notes": study.notes,
        "table3": table3,
        "table4": table4,
        "best_sweep": max(sweep, key=lambda r: r.get(f"dip@{cfg.thresholds[-1]:g}", 0.0)) if sweep else None,
        "figures": figures,
        "early_stop": summary_es,
        "timing": {
            "seconds": seconds,
            "seconds_per_image": seconds / len(items),
            "images_per_hour": 3600.0 * len(items) / seconds if seconds else None,
            "iterations_per_second_per_image": cfg.end * len(items) / seconds if seconds else None,
            "batch_size": cfg.batch_size,
            "device": sorted({curves[it.key].device for it in items}),
        },
        "versions": versions(),
    }


def early_stop_summary(stacked: dict[str, np.ndarray], cfg: DipStudyConfig) -> dict[str, Any]:
    """Where ES-WMV stopped against the fixed T: images stopped, stop iterations, iterations saved.

    An image that did not stop within the run counts as running to the end
    (``cfg.end``); ``iterations_saved_mean`` is ``T`` minus that, averaged (negative: later than T).
    """
    stopped_at = stacked["es_stopped_at"].astype(np.int64)
    stopped = stopped_at > 0
    ran = np.where(stopped, stopped_at, cfg.end)
    return {
        "window": cfg.dip.es_window,
        "patience": cfg.dip.es_patience,
        "n": len(stopped_at),
        "stopped": int(stopped.sum()),
        "es_iteration_median": float(np.median(stacked["es_iteration"])),
        "stopped_at_median": float(np.median(stopped_at[stopped])) if stopped.any() else None,
        "iterations_saved_mean": float(cfg.t - ran.mean()),
    }


def _trajectory_rows(items: list[StudyItem], iterations: list[int], stacked: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for i, it in enumerate(items):
        for j, t in enumerate(iterations):
            row = {"image": it.image, "category": it.category, "iteration": t}
            for name in TRAJECTORY_COLUMNS[3:]:
                row[name] = float(stacked[name][i, j]) if name in stacked else ""
            rows.append(row)
    return rows


def _pick(items: list[StudyItem], attack: str | None, clean_category: str | None = None) -> int | None:
    """Index of the Fig 5/6 image: a perturbed fake of ``attack`` (whitebox fake-wrong first), or a clean one."""
    if clean_category is not None:
        return next((i for i, it in enumerate(items) if it.category == clean_category), None)
    prefs = ("whitebox/fake-wrong", "/fake-wrong", "whitebox/fake-correct", "/fake-correct")
    for suffix in prefs:
        for i, it in enumerate(items):
            if it.category.startswith(f"{attack}-") and it.category.endswith(suffix):
                return i
    return None


def _figure_data(study: StudyInputs, iterations: list[int], raw: np.ndarray, win: np.ndarray, out_dir: Path, cfg: DipStudyConfig) -> dict:
    """What Figs 5 and 6 show, written as data (``figures.json`` and ``fig5/*.png``) for the report to draw."""
    items = study.items
    picks = {
        "fgsm": _pick(items, "fgsm"),
        "cw": _pick(items, "cw"),
        "clean fake": _pick(items, None, CLEAN_FAKE),
        "clean real": _pick(items, None, CLEAN_REAL),
    }
    panels = []
    for label, i in picks.items():
        if i is None:
            panels.append(None)
            continue
        title = f"{label}: {items[i].category}" if label in ("fgsm", "cw") else label
        panels.append({"title": title, "image": items[i].key, "iterations": iterations, "raw": raw[i].tolist(), "window": win[i].tolist()})

    # Fig 5: the FGSM-perturbed fake of Fig 6 when there is one, else the first image
    i5 = next((i for i in (picks["fgsm"], picks["cw"]) if i is not None), 0)
    it5 = items[i5]
    save_png(out_dir / "fig5" / "input.png", study.inputs[i5])
    save_png(out_dir / "fig5" / "clean.png", study.clean[i5])
    snaps = {t: snapshot_path(out_dir, it5.key, t) for t in cfg.keep_iterations() if snapshot_path(out_dir, it5.key, t).is_file()}
    fig5 = {
        "image": it5.key,
        "title": f"{it5.category}/{it5.image}"[:120],
        "input": "fig5/input.png",
        "clean": "fig5/clean.png",
        "input_p_real": it5.baseline_p_real,
        "snapshots": {str(t): str(p.relative_to(out_dir)) for t, p in snaps.items()},
        "p_real": {str(t): float(raw[i5, iterations.index(t)]) for t in snaps if t in iterations},
    }
    data = {"fig5": fig5, "fig6": {"panels": panels, "threshold": cfg.thresholds[0], "classify_at": cfg.t}}
    write_json(out_dir / "figures.json", data)
    return {"fig5": {"image": it5.key}, "fig6": {k: (items[i].key if i is not None else None) for k, i in picks.items()}}
