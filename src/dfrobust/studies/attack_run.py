"""The attack stage: craft on a source model, save 8-bit PNGs, evaluate every target on them.

:func:`run_attack` is what ``dfrobust attack`` and the pipeline call. One run attacks the
chosen test images (by default the fakes: a fake made to pass as real) on the source model and
evaluates each target on the quantised images, whitebox when the target is the source and
blackbox (transfer) otherwise, so one run gives a whole row of the transfer matrix.

Several sources make one surrogate, the :class:`dfrobust.models.ensemble.LogitEnsemble` of
their logits (Liu et al. 2017): the ensemble is the run's source (``ensemble(a+b)`` unless
named), is evaluated itself as the whitebox target, and its members, when listed as targets,
are scored with the setting ``ensemble-member`` (neither whitebox nor a transfer); every other
target is ``blackbox``. Rows crafted on an ensemble carry ``source_members`` (``a+b``).

Output folder::

    OUT/run.json        the run's fingerprints: crafting (config, data, source, images) and targets
    OUT/images/...      adversarial PNGs, mirroring the dataset's relative paths
    OUT/parts/part-00003.csv, .json   rows of one finished batch and its completion mark
    OUT/results.csv     one row per image and target (RESULT_COLUMNS first)
    OUT/table2.csv      accuracy on perturbed images per target, attack and setting, beside clean
    OUT/summary.json    config, manifest hash, models {name: {path, sha256}}, per-target aggregates,
                        world_size and ranks [{rank, images}]

Batches are the units of :class:`dfrobust.utils.parts.PartStore`: batch ``k`` holds images
``k * batch_size ..`` of the seeded image order whatever the number of processes, and goes to the
rank the store's seeded assignment gives it. A killed run resumes where it stopped (only its
unfinished batches are redone); under torchrun rank 0 merges after a barrier, with explicit
``rank``/``world_size`` the rank that finds every part present merges (:mod:`dfrobust.utils.distributed`).
A run whose crafting is unchanged but whose targets changed (a retrained target model, one
more target) re-scores the stored PNGs instead of crafting them again.

The settings live in :mod:`~dfrobust.studies.attack_config`, the loading of source and targets in
:mod:`~dfrobust.studies.attack_models`, one batch's crafting and scoring in
:mod:`~dfrobust.studies.attack_batches`; this module keeps the run: its folder, parts and merge.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dfrobust.attacks import robust as platform  # --robust-to: scores after the chains
from dfrobust.studies.attack_batches import SUCCESS_FLOAT, attack_batch, rescore_part
from dfrobust.studies.attack_config import AttackConfig
from dfrobust.studies.attack_models import RunModel, load_models
from dfrobust.studies.attack_survivors import Survivors, chain_images, read_survivors
from dfrobust.studies.attack_tables import RESULT_COLUMNS, attacked, table2_rows, target_aggregates
from dfrobust.data.dataset import ImageSet
from dfrobust.data.layouts import CLASS_CHOICES, load_images
from dfrobust.errors import DfrobustError
from dfrobust.utils import distributed
from dfrobust.utils.io import (
    read_csv,
    read_record,
    claim_own_folder,
    require_own_folder,
    sha256_bytes,
    to_json,
    write_csv,
    write_json,
)
from dfrobust.utils.parts import PartStore
from dfrobust.utils.runtime import progress, progress_note, seed_everything, versions


def _craft_key(cfg: AttackConfig, data_hash: str, src: RunModel, images: ImageSet, survivors: Survivors | None = None) -> str:
    """What the crafted images depend on: config (minus device), data, source model, chosen images and, in a
    survivors-only run, the earlier runs and which images they fooled (a changed earlier attack re-crafts)."""
    # a run without a chain keeps the key it had before chains existed
    cfg_key = {k: v for k, v in asdict(cfg).items() if k != "device" and (cfg.robust_to or k not in platform.PLATFORM_FIELDS)}
    key: dict[str, Any] = {"config": cfg_key, "data": data_hash, "source": src.sha256, "images": images.paths}
    if survivors is not None:  # a run without earlier attacks keeps the key it had before survivors-only runs existed
        key["survivors_of"] = survivors.key(images.paths)
    return sha256_bytes(to_json(key).encode())


def _fingerprint(craft: str, models: list[RunModel]) -> str:
    """What the whole run depends on: the crafting and the targets."""
    return sha256_bytes(to_json({"craft": craft, "targets": {m.name: m.sha256 for m in models}}).encode())


def _claim_out_dir(out_dir: Path, fingerprint: str, craft: str, cfg: AttackConfig, replace: bool) -> None:
    """Make ``out_dir`` this run's.

    A folder of another run is refused, or emptied when ``replace`` (the pipeline's own folders).
    A folder of the same crafting with other targets is kept: its finished batches carry the old
    fingerprint in their marks, so they are re-scored (not crafted) as they come up.
    """
    run_file = out_dir / "run.json"
    if run_file.is_file():
        previous = read_record(run_file)
        if previous.get("fingerprint") == fingerprint:
            return
        if previous.get("craft") != craft:
            if not replace:
                raise DfrobustError(
                    f"{out_dir} holds another attack run (different attack settings, data or source model); "
                    "choose another --out or delete that folder"
                )
            for name in ("images", "parts"):
                shutil.rmtree(out_dir / name, ignore_errors=True)
        (out_dir / "summary.json").unlink(missing_ok=True)
    claim_own_folder(out_dir, "attack")
    write_json(out_dir / "run.json", {"fingerprint": fingerprint, "craft": craft, "config": asdict(cfg)})


def part_store(out_dir: Path, fingerprint: str, n_images: int, cfg: AttackConfig) -> PartStore:
    """The finished batches of a run under ``out_dir/parts`` (one CSV of rows and a mark each)."""
    return PartStore(out_dir / "parts", fingerprint, n_images, cfg.batch_size, seed=cfg.seed, payloads=(".csv",))


def run_attack(
    data_dir: str | Path,
    source: str | Path | Sequence[str | Path],
    targets: list[Path] | list[str],
    cfg: AttackConfig,
    out_dir: str | Path,
    rank: int | None = None,
    world_size: int | None = None,
    replace: bool = False,
    source_name: str | None = None,
    survivors_of: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Craft adversarial test images on ``source`` and evaluate ``targets`` on them.

    Args:
        data_dir: dataset folder (its ``test`` split is attacked).
        source: checkpoint or detector card the attack sees (whitebox on itself), or a list of
            them: the attack then sees their :class:`LogitEnsemble` (same input size and classes).
        targets: checkpoints or cards evaluated on the adversarial images (transfer for all but the
            source); the source is added when missing, so its whitebox row is always there. With
            an ensemble source, members listed here are scored as ``ensemble-member``.
        cfg: the attack settings.
        out_dir: output folder (see the module docstring); a finished run is not redone.
        rank, world_size: this process's shard of separate runs (no process group); both
            ``None``: torchrun's (``RANK``/``WORLD_SIZE``), or one process.
        replace: empty ``out_dir`` when it holds a run with other crafting (else that is an error).
            A run with the same crafting and other targets is always continued: its stored
            images are re-scored on the new targets.
        source_name: the ensemble's name in the results (default ``ensemble(a+b)``); only with several sources.
        survivors_of: finished attack runs on the same source, in chain order (AutoAttack's): attack only the images
            none of them fooled; the others get a skipped row (:mod:`dfrobust.studies.attack_survivors`).

    Returns:
        ``summary.json``'s content once every batch is done, else
        ``{"complete": False, "batches_done", "batches_total", "out_dir", "rank", "world_size"}``.

    >>> run_attack("data/synth", "models/vgg16.safetensors",
    ...            ["models/vgg16.safetensors", "models/resnet18.safetensors"],
    ...            AttackConfig("fgsm"), "attacks/fgsm-vgg16")  # doctest: +SKIP
    >>> run_attack("data/synth", "models/vgg16.safetensors", [], AttackConfig("square"), "attacks/square-vgg16",
    ...            survivors_of=["attacks/apgd-vgg16"])  # doctest: +SKIP
    >>> run_attack("data/synth", ["models/vgg16.safetensors", "models/resnet18.safetensors"],
    ...            ["models/resnet18-blur.safetensors"], AttackConfig("dimifgsm"), "attacks/dimifgsm-ens")  # doctest: +SKIP
    """
    sources = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    ctx = distributed.shard(rank, world_size, cfg.device)
    data_dir, out_dir = Path(data_dir), require_own_folder(out_dir, "attack", legacy=["run.json"])
    device = distributed.device_for(cfg.device, ctx)
    seed_everything(cfg.seed)
    # a dfrobust dataset folder, or the user's folder/list read in place (data/layouts.py)
    # a survivors-only run draws its images from those the earlier runs saw (chain_images), not from the whole split
    limit = None if survivors_of else cfg.max_images
    images, data_hash = load_images(data_dir, "test", CLASS_CHOICES[cfg.classes], limit=limit, seed=cfg.seed)
    src, models = load_models(sources, [Path(t) for t in targets], device, images.image_size, source_name)
    survivors = read_survivors(survivors_of, src.name) if survivors_of else None
    if survivors is not None:
        images = chain_images(images, survivors, cfg.max_images, cfg.seed)
    craft = _craft_key(cfg, data_hash, src, images, survivors)
    fingerprint = _fingerprint(craft, models)
    summary_file = out_dir / "summary.json"

    def merged() -> dict[str, Any] | None:
        summary = read_record(summary_file) if summary_file.is_file() else None
        return summary if summary is not None and summary.get("fingerprint") == fingerprint else None

    if (done := distributed.broadcast(merged(), ctx)) is not None:  # rank 0 decides for all
        return done
    if ctx.is_main or not ctx.group:  # under torchrun rank 0 claims (and may empty) the folder
        _claim_out_dir(out_dir, fingerprint, craft, cfg, replace)
    distributed.barrier(ctx)

    store = part_store(out_dir, fingerprint, len(images), cfg)
    mine, todo = store.mine(ctx.rank, ctx.world_size), store.todo(ctx.rank, ctx.world_size)
    done_ok = done_n = 0
    if todo:  # the cost said up front: a long attack (the paper's CW, Square) is no surprise
        todo_images = [p for unit in todo for p in images.paths[unit.slice]]
        left = sum(1 for p in todo_images if survivors is None or p not in survivors.fooled)
        chained = f"; {len(todo_images) - left} skipped, fooled by {survivors.column}" if survivors is not None else ""
        progress_note(f"{cfg.attack} on {src.name}: budget {cfg.make().budget().describe(left)} (at most; {len(todo)} batches{chained})")
    started = time.monotonic()
    bar = progress(total=len(mine), initial=len(mine) - len(todo), desc=f"{cfg.attack} on {src.name}", unit="batch")
    for unit in todo:
        part, mark = store.path(unit, ".csv"), store.read_mark(unit)
        if mark is not None and mark.get("craft") == craft and part.is_file():
            rows = rescore_part(cfg, unit, part, images, src, models, device, out_dir)
        else:
            rows = attack_batch(cfg, unit.index, images, src, models, device, out_dir, survivors)
        write_csv(part, rows, RESULT_COLUMNS)
        store.finish(unit, ctx.rank, ctx.world_size, craft=craft)  # the mark, last
        whitebox = attacked(r for r in rows if r["target"] == src.name)
        done_ok += sum(int(r["success"]) for r in whitebox)
        done_n += len(whitebox)
        bar.set_postfix({"success (8-bit PNGs)": f"{done_ok}/{done_n}"})  # the rate every table counts
        bar.update()
        if unit is todo[0] and len(todo) > 1:  # an ETA from the first batch, whatever the progress interval
            first = time.monotonic() - started
            rest = first * (len(todo) - 1)
            progress_note(f"{cfg.attack} on {src.name}: first batch in {first:.1f} s; ETA about {rest:.0f} s for the other {len(todo) - 1}")
    bar.close()

    summary = distributed.merge_once(
        ctx,
        store.complete,
        lambda: _merge(out_dir, store, cfg, fingerprint, data_dir, data_hash, images, src, models, ctx, survivors, survivors_of),
        merged,
    )
    if summary is None:
        return {"complete": False, "batches_done": len(store.done()), "batches_total": len(store.units), "out_dir": str(out_dir),
                "rank": ctx.rank, "world_size": ctx.world_size}  # fmt: skip
    return summary


def _merge(
    out_dir: Path,
    store: PartStore,
    cfg: AttackConfig,
    fingerprint: str,
    data_dir: Path,
    data_hash: str,
    images: ImageSet,
    src: RunModel,
    models: list[RunModel],
    ctx: distributed.Context,
    survivors: Survivors | None = None,
    survivors_of: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Join the parts (in the global image order) into results.csv, table2.csv and summary.json (written last)."""
    rows = store.merge(lambda unit: read_csv(store.path(unit, ".csv")))
    write_csv(out_dir / "results.csv", rows, RESULT_COLUMNS)
    table = table2_rows(rows)
    write_csv(out_dir / "table2.csv", table)
    whitebox = attacked(r for r in rows if r["setting"] == "whitebox")
    n = len(whitebox)  # the images crafted on: a survivors-only run's rates are on its survivors (None when there were none)
    crafting: dict[str, Any] = {
        "n": n,
        # the success counted everywhere: the source's verdict on the stored 8-bit PNGs
        "success_rate": sum(int(r["success"]) for r in whitebox) / n if n else None,
        # the attack's own verdict on its float images (quantisation can undo a flip): diagnostics, never a table's rate
        "success_float_rate": sum(int(r[SUCCESS_FLOAT]) for r in whitebox) / n if n else None,
        "seconds_per_image": sum(float(r["seconds"]) for r in whitebox) / n if n else None,
    }
    if whitebox and whitebox[0].get("kappa_reached") not in (None, ""):
        crafting["kappa_reached_rate"] = sum(int(float(r["kappa_reached"])) for r in whitebox) / len(whitebox)
    attack = cfg.make()
    results = target_aggregates(rows)
    platform.add_platform_results(results, attacked(rows))  # after --robust-to: accuracy after the chain and the held-out chain
    summary = {
        "complete": True,
        "fingerprint": fingerprint,
        "config": asdict(cfg),
        "attack": {"label": attack.label, **attack.settings},
        "dataset": {
            "path": str(data_dir),
            "manifest_hash": data_hash,
            "split": "test",
            "classes": CLASS_CHOICES[cfg.classes],
            "n_images": len(images),
            "image_size": list(images.image_size),
        },
        "source": {src.name: src.record()},
        "targets": {m.name: m.record() for m in models},
        "crafting": crafting,
        **({"survivors": _survivors_record(rows, survivors, survivors_of)} if survivors is not None else {}),
        "results": results,
        "world_size": ctx.world_size,
        "ranks": store.ranks(),
        "versions": versions(),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _survivors_record(rows: list[dict[str, Any]], survivors: Survivors, folders: Sequence[str | Path]) -> dict[str, Any]:
    """summary.json's ``survivors``: which earlier runs, and how many of the run's images were attacked or skipped."""
    whitebox = [r for r in rows if r["setting"] == "whitebox"]
    n_attacked = len(attacked(whitebox))
    return {"of": survivors.labels, "dirs": [str(f) for f in folders], "n_attacked": n_attacked, "n_skipped": len(whitebox) - n_attacked}
