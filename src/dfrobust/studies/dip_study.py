"""The paper's DIP study: purify a stratified subsample, classify at iteration T, Tables III/IV, Figs 5/6.

``run_dip_study(data_dir, model_path, adv_dirs, out_dir, cfg)`` writes to ``out_dir``:

* ``trajectories.csv``: image, category, iteration, p_real_raw, p_real_avg, mse_input, psnr_input, psnr_clean
* ``predictions.csv``: one row per image with the score of every method
* ``table3.csv``: accuracy, AUROC, precision/recall per class, per method and threshold
* ``table4.csv``: accuracy per category (and aggregates), per method and threshold
* ``sweep.csv``: accuracy per classification iteration T (the paper's 2,500 .. 7,500, scaled)
* ``figures.json`` and ``fig5/``: what Figs 5 and 6 show (drawn by :mod:`dfrobust.report.dip_figures`)
* ``summary.json``
* ``parts/`` and ``snapshots/``: finished batches (the run resumes from them) and kept outputs

Batches of ``batch_size`` images of the study order are the units of
:class:`dfrobust.utils.parts.PartStore`: a seeded assignment gives each to one rank, a killed run
redoes only its unfinished batches, and the outputs are merged once every batch is done (under
torchrun by rank 0 after a barrier; with explicit ``rank``/``world_size`` by the rank that finds
them all: :mod:`dfrobust.utils.distributed`). ``summary.json`` records ``world_size`` and
``ranks`` (the images each rank purified). Tables and figure data depend on ``classify_at``, ``thresholds`` and ``window``
only, so changing those and running again re-merges without purifying anything.

The options live in :mod:`~dfrobust.studies.dip_config`, the choice of images in
:mod:`~dfrobust.studies.dip_selection`, the merge into tables and figure data in
:mod:`~dfrobust.studies.dip_outputs`; this module keeps the run: its folder, parts and resume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dfrobust.data.layouts import load_images, scan_layout
from dfrobust.defenses.dip import config_key, purify_batch
from dfrobust.defenses.dip_parts import load_curves, study_parts, write_part
from dfrobust.defenses.dip_sampling import StudyItem
from dfrobust.models.loading import load_model_arg
from dfrobust.studies.dip_config import DipStudyConfig
from dfrobust.studies.dip_outputs import merge_study
from dfrobust.studies.dip_selection import plan_study
from dfrobust.utils import distributed
from dfrobust.utils.io import claim_own_folder, read_record, require_own_folder, sha256_bytes, to_json, write_json


def _fingerprint(cfg: DipStudyConfig, items: list[StudyItem], inputs: torch.Tensor, model_sha: str, manifest: str) -> str:
    """What the purification results depend on (not T, thresholds or window: those only change the merge)."""
    # T matters only when it lies off the recording grid (it is then recorded specially)
    off_grid = {cfg.t} if cfg.t % cfg.dip.record_every else set()
    record_extra = sorted(set(cfg.keep_iterations(with_t=False)) | off_grid)
    key = {"dip": config_key(cfg.dip), "end": cfg.end, "keep": record_extra, "model": model_sha, "data": manifest}
    key["items"] = [(it.key, it.seed) for it in items]
    key["inputs"] = sha256_bytes(inputs.float().contiguous().numpy().tobytes())  # the pixels DIP fits
    return sha256_bytes(to_json(key).encode())[:16]


def run_dip_study(
    data_dir: str | Path,
    model_path: str | Path,
    adv_dirs: Sequence[str | Path],
    out_dir: str | Path,
    cfg: DipStudyConfig | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) the DIP study and write its tables and figure data to ``out_dir``.

    Args:
        data_dir: the data, any layout of :func:`~dfrobust.data.layouts.scan_layout` (its test split is sampled).
        model_path: the classifier (the paper: the blur-augmented ResNet-18).
        adv_dirs: attack output folders (FGSM and CW, blackbox and whitebox in the paper).
        out_dir: where everything goes.
        cfg: study options.
        rank, world_size: this process's shard of separate runs (no process group); both
            ``None``: torchrun's (``RANK``/``WORLD_SIZE``), or one process.

    Returns:
        The summary (also written as ``summary.json``); ``{"complete": False, ...}`` when this
        rank finished its batches but others are still missing.
    """
    cfg = cfg or DipStudyConfig()
    cfg.validate()
    ctx = distributed.shard(rank, world_size, cfg.device)
    out_dir, model_path = require_own_folder(out_dir, "purify", legacy=["plan.json", "summary.json"]), Path(model_path)
    if (out_dir / "summary.json").is_file():
        read_record(out_dir / "summary.json")  # an unreadable summary is an error before anything is written
    device = distributed.device_for(cfg.device, ctx)
    data_dir = Path(data_dir)
    layout = scan_layout(data_dir)  # a dataset folder, or the user's folder or list read in place
    size, test = layout.image_size, None
    if size is None:  # read in place: the images' size is the one they load at (the most common one)
        test = load_images(data_dir, "test")[0]
        size = test.image_size
    model, meta = load_model_arg(model_path, device, expect_input_size=size)  # a checkpoint or a detector card
    model_sha, manifest = meta["sha256"], layout.fingerprint()
    if ctx.group and not ctx.is_main:
        distributed.barrier(ctx)  # rank 0 draws the sample (plan.json); the others read it
    if ctx.is_main:
        claim_own_folder(out_dir, "purify")
    study = plan_study(data_dir, model, model_path, adv_dirs, cfg, manifest, model_sha, cache=out_dir / "plan.json", test=test)
    if ctx.group and ctx.is_main:
        distributed.barrier(ctx)
    fingerprint = _fingerprint(cfg, study.items, study.inputs, model_sha, manifest)
    merge_key = {
        "fingerprint": fingerprint,
        "classify_at": cfg.t,
        "thresholds": cfg.thresholds,
        "window": cfg.window,
        "transforms": cfg.transforms,
        "purifiers": list(cfg.purifiers),
    }
    summary_path = out_dir / "summary.json"

    def merged() -> dict[str, Any] | None:
        previous = read_record(summary_path) if summary_path.is_file() else None
        return previous if previous is not None and previous.get("merge_key") == json_safe(merge_key) else None

    if (previous := distributed.broadcast(merged(), ctx)) is not None:  # rank 0 decides for all
        return previous

    store = study_parts(out_dir, fingerprint, len(study.items), cfg.batch_size, cfg.seed)
    for unit in store.todo(ctx.rank, ctx.world_size):
        batch = study.items[unit.slice]
        traj = purify_batch(
            study.inputs[unit.slice],
            [it.seed for it in batch],
            cfg.dip,
            classifier=model,
            clean=study.clean[unit.slice],
            keep=cfg.keep_iterations(),
            stop_at=cfg.end,
            device=device,
            desc=f"DIP batch {unit.index + 1}/{len(store.units)}",
            run_to_end=True,  # with dip.early_stop the detector observes: T and the sweep need the whole trajectory
        )
        write_part(store, out_dir, unit, [it.key for it in batch], traj, str(device), ctx.rank, ctx.world_size)

    def merge() -> dict[str, Any]:
        summary = merge_study(study, load_curves(store), model, model_path, out_dir, cfg, device)
        summary.update(
            {"merge_key": json_safe(merge_key), "fingerprint": fingerprint, "model_sha256": model_sha, "data_manifest_hash": manifest}
        )
        summary.update({"data_dir": str(data_dir), "world_size": ctx.world_size, "ranks": store.ranks()})
        summary = json_safe(summary)
        write_json(summary_path, summary)
        return summary

    summary = distributed.merge_once(ctx, store.complete, merge, merged)
    if summary is None:
        missing = sum(u.size for u in store.missing())
        return {"complete": False, "rank": ctx.rank, "world_size": ctx.world_size, "missing_images": missing, "out_dir": str(out_dir)}
    return summary


def json_safe(obj: Any) -> Any:
    """``obj`` as it reads back from strict JSON: tuples become lists, NaN becomes ``None``."""

    def clean(o: Any) -> Any:
        if isinstance(o, float) and math.isnan(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    return clean(json.loads(to_json(obj)))
