"""The adaptive-attack stage: craft through a purifier (BPDA + EOT), store the images, evaluate the defense on them.

:func:`run_adaptive` is what ``dfrobust attack --through PURIFIER`` and the pipeline call. Per
image it reports the detector on the clean image, on the clean image purified, on the same
attack crafted without knowing the purifier (non-adaptive) and then purified, and on the
adaptive image purified, each purified evaluation under four rules for a randomized defense: one
draw; the worst of ``eval_draws`` draws (an attacker who may resubmit: an image is fooled when any
draw is); the majority vote of the draws (a tie counts as fooled); and any iterate (DiffPure's
BPDA+EOT rule: fooled when any attack iterate fooled its attack-time purification, or any
evaluation draw is fooled). The attack sees the purifier with ``attack_purifier_params`` over the
defense's (none: the defense itself; a cheaper one is labelled in the summary); the evaluation
always uses the defense's own settings, on draws the attack never saw.

Output folder::

    OUT/run.json                 fingerprint of the run (config, data, model, images)
    OUT/images/...               adaptive adversarial PNGs (8-bit; evaluated as stored)
    OUT/images-nonadaptive/...   the same attack crafted on the bare detector
    OUT/parts/part-00003.csv     rows of one finished batch, then its mark part-00003.json (utils/parts.py)
    OUT/results.csv              one row per image (ADAPTIVE_COLUMNS first)
    OUT/summary.json             accuracies with n and Wilson 95% intervals, config, model, data

A killed run resumes at its first unfinished batch; batches are the units of
:class:`dfrobust.utils.parts.PartStore` (a seeded assignment of batches to ranks).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dfrobust.attacks.base import make_attack, perturbation_norms
from dfrobust.data.dataset import ImageSet
from dfrobust.data.layouts import CLASS_CHOICES, load_images
from dfrobust.defenses.adaptive import PurifiedModel, check_bpda, evaluate_through
from dfrobust.defenses.base import Purifier, make_purifier
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.image_metrics import psnr
from dfrobust.models.inference import p_real
from dfrobust.studies.adaptive_rows import ADAPTIVE_COLUMNS, adaptive_summary
from dfrobust.models.loading import load_model_arg
from dfrobust.utils.parts import PartStore
from dfrobust.utils.io import (
    quantize,
    read_csv,
    read_record,
    claim_own_folder,
    require_own_folder,
    save_png,
    sha256_bytes,
    to_json,
    write_csv,
    write_json,
)
from dfrobust.utils.runtime import progress, progress_note, resolve_device, seed_everything, versions

#: Offset between an attack's seed and the seed of its stream of purifier draws.
_DRAW_STREAM = 0x5EED_ADA
#: The same for the unbounded sanity attack.
_SANITY_STREAM = 0x5A_4171


def _png(rel: str) -> str:
    return str(Path(rel).with_suffix(".png"))


def _attack_params(name: str, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The attack's complete parameters (defaults filled in), with ``seed`` when it takes one and none was given."""
    params = dict(params)
    attack = make_attack(name, **params)
    if "seed" in attack.settings and "seed" not in params:
        attack = make_attack(name, **params, seed=seed)
    return {k: v for k, v in attack.settings.items() if k != "attack"}


def _select(data_dir: Path, images: Sequence[str] | int | None, classes: str, seed: int) -> tuple[ImageSet, str]:
    """The test images to attack: a list of dataset-relative paths (in that order), or a seeded subset of ``images`` of ``classes``."""
    if classes not in CLASS_CHOICES:
        raise DfrobustError(f"--classes must be one of {sorted(CLASS_CHOICES)}, got {classes!r}")
    if images is None or isinstance(images, int):
        if isinstance(images, int) and images < 1:
            raise DfrobustError(f"--max-images must be >= 1, got {images}")
        return load_images(data_dir, "test", CLASS_CHOICES[classes], limit=images, seed=seed)
    wanted = [str(p) for p in images]
    if not wanted:
        raise DfrobustError("the list of images to attack is empty")
    every, data_hash = load_images(data_dir, "test", None, seed=seed)
    where = {p: i for i, p in enumerate(every.paths)}
    missing = [p for p in wanted if p not in where]
    if missing:
        raise DfrobustError(f"{len(missing)} image(s) are not test images of {data_dir} (e.g. {missing[0]}); give dataset-relative paths")
    return every.subset([where[p] for p in wanted]), data_hash


def run_adaptive(
    data_dir: str | Path,
    model_path: str | Path,
    purifier_name: str,
    purifier_params: Mapping[str, Any] | None = None,
    attack_name: str = "apgd",
    attack_params: Mapping[str, Any] | None = None,
    out_dir: str | Path = "adaptive",
    eot: int = 1,
    bpda: str = "identity",
    attack_purifier_params: Mapping[str, Any] | None = None,
    eval_draws: int = 1,
    images: Sequence[str] | int | None = None,
    seed: int = 0,
    device: str = "auto",
    classes: str = "fake",
    batch_size: int = 8,
    unroll_steps: int = 4,
    segment: int | None = None,
    nonadaptive: bool = True,
    study_fooled: Sequence[str] = (),
    sanity_images: int = 0,
    rank: int | None = 0,
    world_size: int | None = 1,
    replace: bool = False,
) -> dict[str, Any]:
    """Attack ``model_path`` through purifier ``purifier_name`` with BPDA + EOT and evaluate the defense on the result.

    Args:
        data_dir: dataset folder (its ``test`` split), or any layout :func:`~dfrobust.data.layouts.load_images` reads.
        model_path: the detector (checkpoint or detector card).
        purifier_name, purifier_params: the defense, as it is evaluated.
        attack_name, attack_params: a registered attack and its parameters (defaults filled in);
            a seeded attack gets ``seed + batch`` per batch.
        out_dir: output folder (module docstring).
        eot: purifier draws averaged per gradient (a deterministic purifier takes one).
        bpda: backward stand-in: ``identity``, ``surrogate``, ``fitted-blur`` or ``unroll``
            (:mod:`dfrobust.defenses.adaptive`).
        attack_purifier_params: overrides of ``purifier_params`` for the purifier the attack
            sees (e.g. ``{"iterations": 200}`` for a cheaper DIP).
        eval_draws: purifications per image in the evaluation (worst-of-N besides draw 0).
        images: dataset-relative test image paths to attack (in that order), or a seeded subset
            size, or ``None`` for every test image of ``classes``.
        seed: seeds the subset, the attack, the attack-time draws and the evaluation draws.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        classes: ``fake`` (the paper's threat), ``real`` or ``both`` when ``images`` is not a list.
        batch_size: images attacked together (a random purifier purifies ``eot`` times as many).
        unroll_steps: DIP steps differentiated through with ``bpda="unroll"``.
        segment: DIP fitting steps per recomputed segment with ``bpda="exact"`` (default: about sqrt of the steps).
        nonadaptive: also craft the same attack on the bare detector and evaluate it purified.
        sanity_images: after the run, attack this many of the images again with an unbounded budget
            (PGD over the whole pixel cube, the same BPDA mode and EOT) and evaluate one fresh
            purification: an attack whose gradient carries information must then fool every one;
            ``summary["sanity"]`` says whether it did.
        study_fooled: images (dataset-relative) whose perturbed versions fooled the DIP study's
            classifier: marked in ``results.csv`` and summarised apart (``on_study_fooled``).
        rank, world_size: this process's shard (the part store's seeded assignment of batches).
        replace: empty ``out_dir`` when it holds another adaptive run (else that is an error).

    Returns:
        ``summary.json``'s content once every batch is done, else ``{"complete": False, ...}``.
    """
    if rank is None or world_size is None:  # torchrun's ranks, or one process
        from dfrobust.utils import distributed

        ctx = distributed.shard(rank, world_size, device)
        rank, world_size = ctx.rank, ctx.world_size
    if not 0 <= rank < world_size:
        raise DfrobustError(f"rank {rank} is outside 0..{world_size - 1}")
    if eot < 1 or eval_draws < 1 or batch_size < 1:
        raise DfrobustError(f"--eot, --eval-draws and --batch-size must be >= 1, got {eot}, {eval_draws}, {batch_size}")
    purifier_params = dict(purifier_params or {})
    defense = make_purifier(purifier_name, **purifier_params)
    at_attack = make_purifier(purifier_name, **{**purifier_params, **dict(attack_purifier_params or {})})
    check_bpda(at_attack, bpda)
    if bpda == "unroll" and unroll_steps < 1:
        raise DfrobustError(f"--unroll-steps must be >= 1, got {unroll_steps}")
    if sanity_images < 0:
        raise DfrobustError(f"sanity_images must be >= 0, got {sanity_images}")
    if bpda == "exact" and segment is not None and segment < 1:
        raise DfrobustError(f"--segment must be >= 1, got {segment}")
    params = _attack_params(attack_name, attack_params or {}, seed)
    data_dir, out_dir = Path(data_dir), require_own_folder(out_dir, "adaptive", legacy=["run.json"])
    dev = resolve_device(device)
    seed_everything(seed)
    image_set, data_hash = _select(data_dir, images, classes, seed)
    model, meta = load_model_arg(model_path, device=dev, expect_input_size=image_set.image_size)

    config = {
        "defense": defense.settings,
        "attack_purifier": at_attack.settings,
        "attack": {"attack": attack_name, **params},
        "bpda": bpda,
        "eot": eot,
        "unroll_steps": unroll_steps if bpda == "unroll" else None,
        "segment": segment if bpda == "exact" else None,
        "eval_draws": eval_draws,
        "nonadaptive": nonadaptive,
        "sanity_images": sanity_images,
        "batch_size": batch_size,
        "seed": seed,
    }
    key = {"config": config, "data": data_hash, "model": meta["sha256"], "images": image_set.paths}
    fingerprint = sha256_bytes(to_json(key).encode())
    summary_file = out_dir / "summary.json"
    if summary_file.is_file() and read_record(summary_file).get("fingerprint") == fingerprint:
        return read_record(summary_file)
    _claim(out_dir, fingerprint, config, replace)

    run = _Run(model, defense, at_attack, attack_name, params, config, image_set, dev, out_dir, set(study_fooled))
    # batch k is unit k of the one sharded part store (its CSV, then its mark)
    store = PartStore(out_dir / "parts", fingerprint, len(image_set), batch_size, seed=seed, payloads=(".csv",))
    mine, todo = store.mine(rank, world_size), store.todo(rank, world_size)
    if todo:  # the cost said up front: every gradient step runs a random purifier eot times
        left = sum(unit.stop - unit.start for unit in todo)
        budget = make_attack(attack_name, **params).budget()
        draws = eot if at_attack.random else 1  # a deterministic purifier is purified once per gradient
        purifications = f"; x {draws} purifier draws (EOT) = {budget.per_image * draws * left:,} purifications" if draws > 1 else ""
        progress_note(
            f"{attack_name} through {purifier_name}: budget {budget.describe(left)}{purifications} (at most; {len(todo)} batches)"
        )
    started = time.monotonic()
    bar = progress(total=len(mine), initial=len(mine) - len(todo), desc=f"{attack_name} through {purifier_name}", unit="batch")
    for unit in todo:
        write_csv(store.path(unit, ".csv"), run.batch(unit.index), ADAPTIVE_COLUMNS)
        store.finish(unit, rank, world_size)  # the mark, last
        bar.update()
        if unit is todo[0] and len(todo) > 1:  # an ETA from the first batch, whatever the progress interval
            first = time.monotonic() - started
            rest = first * (len(todo) - 1)
            progress_note(
                f"{attack_name} through {purifier_name}: first batch in {first:.1f} s; ETA about {rest:.0f} s for the other {len(todo) - 1}"
            )
    bar.close()
    if not store.complete():
        return {"complete": False, "batches_done": len(store.done()), "batches_total": len(store.units), "out_dir": str(out_dir)}
    rows = store.merge(lambda unit: read_csv(store.path(unit, ".csv")))
    write_csv(out_dir / "results.csv", rows, ADAPTIVE_COLUMNS)
    marked = [r for r in rows if str(r.get("study_fooled")) == "1"]
    sanity = run.sanity(min(sanity_images, len(image_set))) if sanity_images else None
    summary = {
        "complete": True,
        "fingerprint": fingerprint,
        **adaptive_summary(rows),
        "attack_purifier_cheaper": at_attack.settings != defense.settings,
        "on_study_fooled": adaptive_summary(marked) if study_fooled else None,
        "sanity": sanity,
        "config": config,
        "model": {meta["name"]: {"path": str(model_path), "sha256": meta["sha256"]}},
        "dataset": {"path": str(data_dir), "manifest_hash": data_hash, "split": "test", "n_images": len(image_set),
                    "image_size": list(image_set.image_size)},
        "versions": versions(),
    }  # fmt: skip
    write_json(summary_file, summary)
    return summary


def _claim(out_dir: Path, fingerprint: str, config: dict[str, Any], replace: bool) -> None:
    """Make ``out_dir`` this run's: a folder of another adaptive run is refused, or emptied of what that run made."""
    claim_own_folder(out_dir, "adaptive")
    run_file = out_dir / "run.json"
    if run_file.is_file() and read_record(run_file).get("fingerprint") != fingerprint:
        if not replace:
            raise DfrobustError(
                f"{out_dir} holds another adaptive run (other settings, data, model or images); choose another --out or delete it"
            )
        for name in ("images", "images-nonadaptive", "parts"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in ("results.csv", "summary.json"):
            (out_dir / name).unlink(missing_ok=True)
    if not run_file.is_file() or read_record(run_file).get("fingerprint") != fingerprint:
        write_json(run_file, {"fingerprint": fingerprint, "config": config})


class _Run:
    """What every batch of one run shares: the models, the purifiers, the attack settings, the images."""

    def __init__(
        self,
        model: torch.nn.Module,
        defense: Purifier,
        at_attack: Purifier,
        attack_name: str,
        params: dict[str, Any],
        config: dict[str, Any],
        images: ImageSet,
        device: torch.device,
        out_dir: Path,
        study_fooled: set[str],
    ) -> None:
        self.model, self.defense, self.at_attack = model, defense, at_attack
        self.attack_name, self.params, self.config = attack_name, params, config
        self.images, self.device, self.out_dir = images, device, out_dir
        self.study_fooled = study_fooled

    def _attack(self, batch: int) -> Any:
        params = dict(self.params)
        if "seed" in params:
            params["seed"] = int(params["seed"]) + batch
        return make_attack(self.attack_name, **params)

    def sanity(self, n: int) -> dict[str, Any]:
        """An unbounded attack through the same gradient (BPDA mode, EOT) on the first ``n`` images, one fresh purification each.

        PGD with the whole pixel cube as its budget (Linf 1, or the cube's diagonal in L2) and a
        fixed step of a tenth of it, for ``max(steps, 10)`` steps: APGD's step schedule starts at
        twice the budget, which with an unbounded one only jumps between the cube's corners.
        """
        cfg = self.config
        x, y = self.images.images(slice(0, n)), self.images.y[:n]
        norm = str(self.params.get("norm", "linf"))
        eps = 1.0 if norm == "linf" else float(x[0].numel()) ** 0.5  # no bound at all
        steps = max(int(self.params.get("steps", 10)), 10)
        through = PurifiedModel(self.model, self.at_attack, cfg["bpda"], cfg["eot"], cfg["seed"] + _SANITY_STREAM, cfg["unroll_steps"] or 1,
                                segment=cfg.get("segment"))  # fmt: skip
        base_log = logging.getLogger("dfrobust.attacks.base")
        level = base_log.level
        base_log.setLevel(logging.ERROR)  # the budget is unbounded on purpose: no "large eps" warning
        try:
            attack = make_attack("pgd", eps=eps, norm=norm, steps=steps, step_size=eps / 10, random_start=False)
        finally:
            base_log.setLevel(level)
        x_adv = quantize(attack(through, x.to(self.device), y.to(self.device)).x_adv.cpu())
        # evaluation draws past the run's own (the same seeds as an image of index >= every image's)
        res = evaluate_through(self.model, self.defense, x_adv, y, 1, cfg["seed"], cfg["batch_size"], offset=len(self.images))
        fooled = int(res["fooled_any"].sum())
        return {"attack": attack.label, "eps": eps, "norm": norm, "steps": steps, "n": n, "fooled": fooled, "passed": fooled == n}

    def batch(self, k: int) -> list[dict[str, Any]]:
        """Craft, store and evaluate batch ``k``; its result rows."""
        cfg = self.config
        bs, seed = cfg["batch_size"], cfg["seed"]
        sl = slice(k * bs, (k + 1) * bs)
        x, y, paths = self.images.images(sl), self.images.y[sl], self.images.paths[sl]
        offset = k * bs
        attack = self._attack(k)
        # a DIP forward takes seconds to minutes: a line per forward (silent for a cheap purifier); the
        # count of forwards depends on the attack (probes, restarts, success checks), so no total
        bar = progress(
            desc=f"batch {k}: {attack.label} forwards through {self.at_attack.name} (BPDA {cfg['bpda']}, EOT {cfg['eot']}, {len(x)} images)",
            unit="forward",
            disable=not self.at_attack.random or None,
        )
        through = PurifiedModel(
            self.model, self.at_attack, cfg["bpda"], cfg["eot"], seed + k + _DRAW_STREAM, cfg["unroll_steps"] or 1,
            segment=cfg.get("segment"), on_forward=lambda: bar.update(1),
        )  # fmt: skip
        through.watch(y.to(self.device))
        start = time.perf_counter()
        with bar:
            result = attack(through, x.to(self.device), y.to(self.device)).to("cpu")
        # DiffPure's rule counts an iterate fooling the defense's own purification: not measured when the attack saw a cheaper one
        iterates_fooled = through.fooled_iterates.cpu() if self.at_attack.settings == self.defense.settings else None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = (time.perf_counter() - start) / len(x)
        x_adv = quantize(result.x_adv)  # what the PNG holds; evaluated as stored
        for rel, img in zip(paths, x_adv):
            save_png(self.out_dir / "images" / _png(rel), img)

        def ev(images: torch.Tensor, draws: int) -> dict[str, Any]:
            return evaluate_through(self.model, self.defense, images, y, draws, seed, bs, offset)

        clean_scores = p_real(self.model, x, bs, self.device)
        adv_scores = p_real(self.model, x_adv, bs, self.device)
        clean_pure = ev(x, 1)
        adaptive = ev(x_adv, cfg["eval_draws"])
        plain = None
        if cfg["nonadaptive"]:
            x_plain = quantize(self._attack(k)(self.model, x.to(self.device), y.to(self.device)).x_adv.cpu())
            for rel, img in zip(paths, x_plain):
                save_png(self.out_dir / "images-nonadaptive" / _png(rel), img)
            plain = ev(x_plain, cfg["eval_draws"])
        l2, linf = perturbation_norms(x_adv, x)
        quality = psnr(x_adv, x)
        sigma = through.sigma_mean
        rows = []
        for i, rel in enumerate(paths):
            rows.append({
                "image": rel,
                "label": int(y[i]),
                "defense": self.defense.name,
                "attack": attack.label,
                "bpda": cfg["bpda"],
                "eot": cfg["eot"],
                "eval_draws": adaptive["draws"],
                "clean_p_real": float(clean_scores[i]),
                "clean_pred": int(clean_scores[i] >= 0.5),  # REAL = 1 when P(real) >= 0.5
                "clean_purified_pred": int(clean_pure["pred"][i]),
                "nonadaptive_pred": int(plain["pred"][i]) if plain else "",
                "nonadaptive_fooled_any": int(plain["fooled_any"][i]) if plain else "",
                "adv_p_real": float(adv_scores[i]),
                "adv_pred": int(adv_scores[i] >= 0.5),
                "adaptive_p_real": float(adaptive["p_real"][i]),
                "adaptive_pred": int(adaptive["pred"][i]),
                "adaptive_correct_draws": int(adaptive["correct_draws"][i]),
                "adaptive_fooled_any": int(adaptive["fooled_any"][i]),
                # majority of the evaluation draws; a tie counts as fooled
                "adaptive_vote_pred": int(y[i]) if 2 * int(adaptive["correct_draws"][i]) > adaptive["draws"] else 1 - int(y[i]),
                "adaptive_iterates_fooled_any": int(bool(iterates_fooled[i]) or bool(adaptive["fooled_any"][i]))
                if iterates_fooled is not None
                else "",
                # robust accuracy of the defended detector: right on the purified clean image and on every draw of the attacked one
                "defended_fooled_any": int(int(clean_pure["pred"][i]) != int(y[i]) or bool(adaptive["fooled_any"][i])),
                "study_fooled": int(rel in self.study_fooled),
                "l2": float(l2[i]),
                "linf": float(linf[i]),
                "psnr": float(quality[i]),
                "seconds": seconds,
                "fitted_sigma": sigma if sigma is not None else "",
            })  # fmt: skip
        return rows
