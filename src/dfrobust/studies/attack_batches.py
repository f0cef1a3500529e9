"""One batch of an attack run: craft it on the source, save its PNGs and score every target (or re-score stored PNGs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from dfrobust.attacks import robust as platform  # --robust-to: EOT crafting, scores after the chains
from dfrobust.attacks.base import Attack, perturbation_norms
from dfrobust.data.dataset import ImageSet
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.image_metrics import psnr, ssim
from dfrobust.models.inference import p_real
from dfrobust.studies.attack_config import AttackConfig
from dfrobust.studies.attack_models import RunModel
from dfrobust.studies.attack_survivors import Survivors, skipped_row
from dfrobust.studies.attack_tables import SURVIVORS_OF, is_attacked
from dfrobust.utils.imageops import jpeg_round_trip
from dfrobust.utils.io import load_image, quantize, read_csv, save_png
from dfrobust.utils.parts import Unit

#: Per-image attack extras copied into results.csv (when the attack reports them).
EXTRA_COLUMNS = ("kappa_reached", "margin", "c", "c_lo", "c_hi", "adam_steps", "queries")


def png_name(rel: str) -> str:
    """Where an image's adversarial version goes under ``images/`` (same relative path, ``.png``)."""
    return str(Path(rel).with_suffix(".png"))


def _scores(
    models: list[RunModel], images: dict[str, torch.Tensor], batch_size: int, device: torch.device
) -> dict[str, dict[str, torch.Tensor]]:
    """``P(real)`` of every model on every named image batch: ``{model: {name: N scores}}``."""
    return {m.name: {k: p_real(m.model, v, batch_size, device) for k, v in images.items()} for m in models}


#: The column of the attack's own success on its float image (before the 8-bit PNG); ``success`` is the one counted.
SUCCESS_FLOAT = "success_float"
#: Its name in result files written before it was renamed (read back by :func:`rescore_part`).
LEGACY_SUCCESS_FLOAT = "attack_success"


#: Columns of a result row that depend on the target model; every other column describes the crafted image.
TARGET_COLUMNS = ("target", "setting", "clean_p_real", "adv_p_real", "clean_pred", "adv_pred", "success",
                  "jpeg_quality", "jpeg_p_real", "jpeg_pred", "jpeg_clean_pred", *platform.PLATFORM_COLUMNS)  # fmt: skip


#: Per-image distances, placed between the prediction columns and ``success`` in a result row.
IMAGE_METRICS = ("l2", "linf", "psnr", "ssim")


def _batch_slice(cfg: AttackConfig, batch: int) -> slice:
    return slice(batch * cfg.batch_size, (batch + 1) * cfg.batch_size)


def attack_batch(
    cfg: AttackConfig,
    batch: int,
    images: ImageSet,
    src: RunModel,
    models: list[RunModel],
    device: torch.device,
    out_dir: Path,
    survivors: Survivors | None = None,
) -> list[dict[str, Any]]:
    """Attack one batch, save its PNGs, evaluate every model; returns its result rows.

    With ``survivors`` (a survivors-only run) the images an earlier attack fooled are not attacked: each gets
    one skipped row (:func:`~dfrobust.studies.attack_survivors.skipped_row`) in its place among the rows.
    """
    sl = _batch_slice(cfg, batch)
    paths, groups = images.paths[sl], [r.get("group") for r in images.records[sl]]
    fooled = survivors.fooled if survivors is not None else {}
    keep = [i for i, rel in enumerate(paths) if rel not in fooled]
    attack = cfg.make(batch)  # the batch's seed whatever its survivors: the same batch always gets the same draws
    rows: list[dict[str, Any]] = []
    if keep:
        x_all, y_all = images.images(sl), images.y[sl]
        x, y = x_all[keep], y_all[keep]
        rows = _craft(cfg, attack, batch, x, y, [paths[i] for i in keep], [groups[i] for i in keep], src, models, device, out_dir)
    if survivors is None:
        return rows
    for r in rows:
        r[SURVIVORS_OF] = survivors.column
    extra = {"source_members": "+".join(m.name for m in src.members)} if src.members else {}
    return _in_image_order(paths, rows, survivors, attack.label, src, groups, extra)


def _in_image_order(
    paths: list[str],
    rows: list[dict[str, Any]],
    survivors: Survivors,
    label: str,
    src: RunModel,
    groups: list[Any],
    extra: dict[str, Any],
) -> list[dict[str, Any]]:
    """The batch's rows in its image order: each attacked image's rows, or a skipped image's one row."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_image.setdefault(str(r["image"]), []).append(r)
    out: list[dict[str, Any]] = []
    for rel, group in zip(paths, groups):
        if rel in survivors.fooled:
            out.append(skipped_row(rel, survivors, label, src.name, src.setting(src), {**extra, **({"group": group} if group else {})}))
        else:
            out += by_image[rel]
    return out


def _craft(
    cfg: AttackConfig,
    attack: Attack,
    batch: int,
    x: torch.Tensor,
    y: torch.Tensor,
    paths: list[str],
    groups: list[Any],
    src: RunModel,
    models: list[RunModel],
    device: torch.device,
    out_dir: Path,
) -> list[dict[str, Any]]:
    """Craft ``x`` on the source, save the PNGs and score every model: the rows of these images."""
    start = time.perf_counter()
    result = attack(platform.robust_source(src.model, cfg.robust_to, cfg.robust_eot, cfg.seed + batch), x.to(device), y.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / len(x)
    result = result.to("cpu")
    x_adv = quantize(result.x_adv)  # what the PNG holds; everything below is evaluated on it
    for rel, img in zip(paths, x_adv):
        save_png(out_dir / "images" / png_name(rel), img)

    l2, linf = perturbation_norms(x_adv, x)
    per_image = {"l2": l2.tolist(), "linf": linf.tolist(), "psnr": psnr(x_adv, x).tolist(), "ssim": ssim(x_adv, x)}
    extras = {k: result.extras[k].tolist() for k in EXTRA_COLUMNS if k in result.extras and result.extras[k].ndim == 1}
    if any(groups):  # the generator of a nested in-place folder
        extras["group"] = groups
    crafted = []
    for i, rel in enumerate(paths):
        crafted.append({
            "image": rel,
            "label": int(y[i]),
            "attack": attack.label,
            "source": src.name,
            **{k: v[i] for k, v in per_image.items()},
            **({"source_members": "+".join(m.name for m in src.members)} if src.members else {}),
            "seconds": seconds,
            # the attack's own verdict on its float image, before quantisation: diagnostics only; every table and
            # rate counts ``success``, the target's verdict on the stored 8-bit PNG (docs/architecture.md)
            SUCCESS_FLOAT: int(result.success[i]),
            **{k: int(v[i]) if isinstance(v[i], bool) else v[i] for k, v in extras.items()},
        })  # fmt: skip
    return _target_rows(cfg, crafted, x, x_adv, src, models, device)


def _target_rows(
    cfg: AttackConfig,
    crafted: list[dict[str, Any]],
    x: torch.Tensor,
    x_adv: torch.Tensor,
    src: RunModel,
    models: list[RunModel],
    device: torch.device,
) -> list[dict[str, Any]]:
    """One result row per image and model: the image's crafting columns plus the model's scores."""
    batches = {"clean": x, "adv": x_adv}
    if cfg.jpeg_quality:
        batches.update(jpeg=jpeg_round_trip(x_adv, cfg.jpeg_quality), jpeg_clean=jpeg_round_trip(x, cfg.jpeg_quality))
    if cfg.robust_to and cfg.heldout:
        batches.update(platform.platform_batches(cfg.robust_to, cfg.heldout, x_adv, [c["image"] for c in crafted], cfg.seed))
    scores = _scores(models, batches, cfg.batch_size, device)

    rows: list[dict[str, Any]] = []
    for i, image in enumerate(crafted):
        head = {k: image[k] for k in ("image", "label", "attack", "source")}
        tail = {k: v for k, v in image.items() if k not in head}
        label = int(head["label"])
        for m in models:
            s = {k: float(v[i]) for k, v in scores[m.name].items()}
            adv_pred = int(s["adv"] >= 0.5)  # REAL = 1 when P(real) >= 0.5, else FAKE = 0
            row = {
                **head,
                "target": m.name,
                "setting": m.setting(src),
                "clean_p_real": s["clean"],
                "adv_p_real": s["adv"],
                "clean_pred": int(s["clean"] >= 0.5),
                "adv_pred": adv_pred,
                **{k: tail[k] for k in IMAGE_METRICS},
                "success": int(adv_pred != label),
                **{k: v for k, v in tail.items() if k not in IMAGE_METRICS},
            }
            if cfg.jpeg_quality:
                row.update(
                    jpeg_quality=cfg.jpeg_quality,
                    jpeg_p_real=s["jpeg"],
                    jpeg_pred=int(s["jpeg"] >= 0.5),
                    jpeg_clean_pred=int(s["jpeg_clean"] >= 0.5),
                )
            if cfg.robust_to and cfg.heldout:
                row.update(platform.platform_columns(cfg.robust_to, cfg.heldout, s))
            rows.append(row)
    return rows


def rescore_part(
    cfg: AttackConfig, unit: Unit, part: Path, images: ImageSet, src: RunModel, models: list[RunModel], device: torch.device, out_dir: Path
) -> list[dict[str, Any]]:
    """Re-evaluate a finished batch on a new set of targets from its stored PNGs (no crafting); its new rows.

    A skipped image's row (a survivors-only run) is the source's alone and has no PNG: it is kept as it is.
    """
    rows = read_csv(part)
    whitebox = [r for r in rows if r["setting"] == "whitebox"]
    if [r["image"] for r in whitebox] != images.paths[unit.slice]:
        raise DfrobustError(f"{part} does not hold this run's images; delete {out_dir} and rerun")
    crafted = [{k: v for k, v in r.items() if k not in TARGET_COLUMNS} for r in whitebox if is_attacked(r)]
    for c in crafted:  # a part written before the rename carries the float success under its old name
        if LEGACY_SUCCESS_FLOAT in c:
            c[SUCCESS_FLOAT] = c.pop(LEGACY_SUCCESS_FLOAT)
    keep = [i for i, r in enumerate(whitebox) if is_attacked(r)]
    fresh: list[dict[str, Any]] = []
    if crafted:
        x_adv = torch.stack([load_image(out_dir / "images" / png_name(c["image"])) for c in crafted])
        fresh = _target_rows(cfg, crafted, images.images(unit.slice)[keep], x_adv, src, models, device)
    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in fresh:
        by_image.setdefault(str(r["image"]), []).append(r)
    return [row for r in whitebox for row in (by_image[r["image"]] if is_attacked(r) else [r])]
