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
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from dfrobust.constants import CLASS_NAMES, DECISION_THRESHOLD
from dfrobust.data.dataset import ImageSet
from dfrobust.data.layouts import load_images, scan_layout
from dfrobust.defenses.dip import DipConfig, default_classify_at, purify_batch
from dfrobust.defenses.dip_parts import load_curves, snapshot_path, study_parts, write_part
from dfrobust.defenses.dip_sampling import (
    CLEAN_FAKE,
    CLEAN_REAL,
    AttackFolder,
    StudyItem,
    category_candidates,
    read_attack_folder,
    sample_categories,
    stable_seed,
    unique_names,
)
from dfrobust.studies.dip_tables import (
    TABLE3_COLUMNS,
    sweep_points,
    sweep_rows,
    table3_rows,
    table4_rows,
    window_mean,
)
from dfrobust.defenses.base import available_purifiers, make_purifier
from dfrobust.defenses.transforms import transform_purifiers
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.metrics import predict
from dfrobust.models.checkpoint import model_name
from dfrobust.models.inference import p_real
from dfrobust.models.loading import load_model_arg
from dfrobust.utils.io import (
    load_image,
    read_json,
    read_record,
    claim_own_folder,
    require_own_folder,
    save_png,
    sha256_bytes,
    sha256_file,
    to_json,
    write_csv,
    write_json,
)
from dfrobust.utils import distributed
from dfrobust.utils.runtime import versions

TRAJECTORY_COLUMNS = ["image", "category", "iteration", "p_real_raw", "p_real_avg", "mse_input", "psnr_input", "psnr_clean"]
#: Fig 5 iterations as fractions of the run (the paper's 10,000: 100, 1,000, 3,000, 6,000, 9,000, 10,000).
KEEP_FRACTIONS = (0.01, 0.1, 0.3, 0.6, 0.9, 1.0)


@dataclass
class DipStudyConfig:
    """Options of the DIP study (paper defaults); JSON-serialisable with :func:`dataclasses.asdict`."""

    dip: DipConfig = field(default_factory=DipConfig)
    per_category: int = 10  #: images per category
    classify_at: int | None = None  #: T; default 60% of dip.iterations (6,000 of 10,000)
    stop_at: int | None = None  #: stop the optimisation here (>= T); default: run dip.iterations
    thresholds: tuple[float, ...] = (DECISION_THRESHOLD, 0.25)
    window: int = 10  #: recorded samples in the window average around T
    keep: tuple[int, ...] | None = None  #: iterations whose outputs are kept (Fig 5); default KEEP_FRACTIONS
    batch_size: int = 8  #: images purified at once (one network each)
    seed: int = 0
    device: str = "auto"
    transforms: bool = True  #: also score the cheap purifiers below beside DIP
    purifiers: tuple[str, ...] = ("jpeg", "blur")  #: registered purifiers scored beside DIP (jpeg/blur with the settings below)
    jpeg_quality: int = 75
    blur_sigma: float | None = None  #: default: width / 256 px (at least 0.5)

    def __post_init__(self) -> None:
        if isinstance(self.dip, dict):
            self.dip = DipConfig(**self.dip)
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.purifiers = tuple(str(p) for p in self.purifiers)
        if self.keep is not None:
            self.keep = tuple(int(t) for t in self.keep)

    @property
    def end(self) -> int:
        """The last iteration run."""
        return min(self.dip.iterations, self.stop_at) if self.stop_at else self.dip.iterations

    @property
    def t(self) -> int:
        """The classification iteration T."""
        return self.classify_at if self.classify_at is not None else default_classify_at(self.dip.iterations)

    def keep_iterations(self, with_t: bool = True) -> list[int]:
        """Iterations whose outputs are kept: the Fig 5 ones (and T), up to the end."""
        keep = self.keep if self.keep is not None else {max(1, round(f * self.dip.iterations)) for f in KEEP_FRACTIONS}
        return sorted({t for t in keep if 1 <= t <= self.end} | ({self.t} if with_t else set()))

    def validate(self) -> None:
        """One-line errors for options that cannot work together."""
        if self.t > self.end:
            raise DfrobustError(
                f"--classify-at {self.t} lies after the last iteration {self.end}; lower it or raise --stop-at/--iterations"
            )
        if self.per_category < 1 or self.batch_size < 1 or self.window < 1:
            raise DfrobustError("--per-category, --batch-size and the window need to be at least 1")
        unknown = sorted(set(self.purifiers) - set(available_purifiers()))
        if unknown:
            raise DfrobustError(f"unknown purifier(s) {unknown}; use {available_purifiers()}")


@dataclass
class StudyInputs:
    """The planned study: its images and what is needed to purify and score them."""

    items: list[StudyItem]
    inputs: torch.Tensor  #: N x 3 x H x W, what DIP fits (adversarial or clean)
    clean: torch.Tensor  #: N x 3 x H x W, the clean test images
    attacks: list[AttackFolder]
    notes: list[str]
    candidates: dict[str, int]


def _batched_p_real(model: torch.nn.Module, images: ImageSet | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return p_real(model, images, batch_size)
    return torch.cat([p_real(model, x, batch_size) for x, _, _ in images.batches(batch_size)])


def _adv_scores(atk: AttackFolder, ok: set[str], model: torch.nn.Module, notes: list[str]) -> dict[str, float]:
    """The classifier's P(real) on each usable adversarial image of ``atk`` (missing PNGs are skipped and counted)."""
    usable = [p for p in atk.images if p in ok]
    present = [p for p in usable if atk.image_path(p).is_file()]
    if len(present) < len(usable):
        notes.append(f"{atk.name}: {len(usable) - len(present)} adversarial image(s) missing under {atk.path / 'images'}")
    scores: dict[str, float] = {}
    for start in range(0, len(present), 64):
        chunk = present[start : start + 64]
        x = torch.stack([_load(atk.image_path(p)) for p in chunk])
        scores.update(zip(chunk, p_real(model, x).tolist()))
    return scores


def _load(path: Path) -> torch.Tensor:
    try:
        return load_image(path)
    except OSError as exc:
        raise DfrobustError(f"cannot read {path}: {exc}; re-run the stage that wrote it") from exc


def choose_items(
    test: ImageSet, model: torch.nn.Module, attacks: list[AttackFolder], cfg: DipStudyConfig
) -> tuple[list[StudyItem], list[str], dict[str, int]]:
    """Score the clean test split and the adversarial images, then draw the categories (seeded).

    Returns the items in study order, notes (missing images, short categories) and the number
    of candidates per category.
    """
    notes: list[str] = []
    clean_p = _batched_p_real(model, test)
    labels = test.y.tolist()
    correct = (predict(clean_p) == np.asarray(labels)).tolist()
    ok = {p for p, c in zip(test.paths, correct) if c}
    adv_p = {atk.name: _adv_scores(atk, ok, model, notes) for atk in attacks}
    plan = sample_categories(category_candidates(test.paths, labels, correct, attacks, adv_p), cfg.per_category, cfg.seed)
    notes.extend(plan.notes)
    index = {p: i for i, p in enumerate(test.paths)}
    items = []
    for category, paths in plan.chosen.items():
        for rel in paths:
            key = f"{category}/{rel}"
            if category in (CLEAN_FAKE, CLEAN_REAL):
                source, score = "clean", float(clean_p[index[rel]])
            else:
                source = category.split("/")[0]
                score = adv_p[source][rel]
            items.append(StudyItem(key, rel, category, labels[index[rel]], source, score, stable_seed(cfg.seed, key)))
    if not items:
        raise DfrobustError("no test image qualifies for the study (the classifier gets none right?); check --model and --data")
    return items, notes, plan.candidates


def plan_study(
    data_dir: Path,
    model: torch.nn.Module,
    model_path: Path,
    adv_dirs: Sequence[str | Path],
    cfg: DipStudyConfig,
    manifest: str,
    model_sha: str,
    cache: Path | None = None,
    test: ImageSet | None = None,
) -> StudyInputs:
    """Choose the study's images and load what DIP fits for each.

    The choice is kept in ``cache`` (``plan.json``) under a key of everything it depends on, so
    a resumed run or another rank skips scoring the whole test split again. ``test``: the test
    split already loaded (needed for data read in place, whose images are resized as they load);
    without it a dataset folder's clean images are read one by one.
    """
    attacks = unique_names([read_attack_folder(d, model_path, model_sha, manifest) for d in adv_dirs])
    key = {
        "model": model_sha,
        "data": manifest,
        "seed": cfg.seed,
        "per_category": cfg.per_category,
        "attacks": [(a.name, str(a.path.resolve()), sha256_file(a.path / "results.csv")) for a in attacks],
    }
    key_hash = sha256_bytes(to_json(key).encode())
    cached = read_json(cache) if cache is not None and cache.is_file() else {}
    # candidates are stored as [category, n] pairs: JSON objects are written with sorted keys,
    # which would reorder the categories (and Table IV) of a resumed run
    if cached.get("key") == key_hash and isinstance(cached.get("candidates"), list):
        items = [StudyItem(**d) for d in cached["items"]]
        notes, candidates = list(cached["notes"]), {c: int(n) for c, n in cached["candidates"]}
    else:
        test = test if test is not None else load_images(data_dir, "test")[0]
        items, notes, candidates = choose_items(test, model, attacks, cfg)
        if cache is not None:
            write_json(cache, {"key": key_hash, "items": [it.to_json() for it in items], "notes": notes,
                               "candidates": [[c, n] for c, n in candidates.items()]})  # fmt: skip
    by_name = {a.name: a for a in attacks}
    if test is not None:
        index = {p: i for i, p in enumerate(test.paths)}
        clean = test.images([index[it.image] for it in items])
    else:
        clean = torch.stack([_load(data_dir / it.image) for it in items])
    size = tuple(clean.shape[-2:])
    resized = 0

    def adversarial(it: StudyItem) -> torch.Tensor:
        nonlocal resized
        x = _load(by_name[it.source].image_path(it.image))
        if tuple(x.shape[-2:]) != size:  # attacked at another size (a folder of mixed sizes): DIP fits it beside its clean image
            resized += 1
            x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)
        return x

    inputs = torch.stack([clean[i] if it.source == "clean" else adversarial(it) for i, it in enumerate(items)])
    if resized:
        notes.append(
            f"{resized} adversarial image(s) were crafted at another size than their clean images and were resized to {size[0]}x{size[1]}"
        )
    return StudyInputs(items, inputs, clean, attacks, notes, candidates)


def _fingerprint(cfg: DipStudyConfig, items: list[StudyItem], inputs: torch.Tensor, model_sha: str, manifest: str) -> str:
    """What the purification results depend on (not T, thresholds or window: those only change the merge)."""
    # T matters only when it lies off the recording grid (it is then recorded specially)
    off_grid = {cfg.t} if cfg.t % cfg.dip.record_every else set()
    record_extra = sorted(set(cfg.keep_iterations(with_t=False)) | off_grid)
    key = {"dip": dataclasses.asdict(cfg.dip), "end": cfg.end, "keep": record_extra, "model": model_sha, "data": manifest}
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
    if cfg.transforms:
        baselines = transform_purifiers(study.inputs.shape[-1], cfg.jpeg_quality, cfg.blur_sigma)
        for name in cfg.purifiers:
            purifier = baselines.get(name) or make_purifier(name)
            scores[name] = _batched_p_real(model, purifier(study.inputs)).numpy()

    write_csv(out_dir / "trajectories.csv", _trajectory_rows(items, iterations, stacked), TRAJECTORY_COLUMNS)
    pred_rows = [
        {"image": it.image, "category": it.category, "label": CLASS_NAMES[it.label], "source": it.source, "seed": it.seed,
         **{f"{m}_p_real": float(s[i]) for m, s in scores.items()},
         "psnr_input_at_t": float(stacked["psnr_input"][i, ti]),
         "psnr_clean_at_t": float(stacked["psnr_clean"][i, ti]) if "psnr_clean" in stacked else ""}
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
