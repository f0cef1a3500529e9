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
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfrobust.attacks.base import Attack, make_attack, perturbation_norms
from dfrobust.attacks import robust as platform  # --robust-to: EOT crafting, scores after the chains
from dfrobust.studies.attack_tables import RESULT_COLUMNS, table2_rows, target_aggregates
from dfrobust.data.dataset import ImageSet
from dfrobust.data.layouts import CLASS_CHOICES, load_images
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.image_metrics import psnr, ssim
from dfrobust.models.ensemble import LogitEnsemble, check_input_sizes, check_output_shapes, ensemble_name
from dfrobust.models.inference import p_real
from dfrobust.models.loading import load_model_arg, model_display_name, model_input_size
from dfrobust.utils import distributed
from dfrobust.utils.io import (
    load_image,
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
from dfrobust.utils.imageops import jpeg_round_trip
from dfrobust.utils.parts import PartStore, Unit
from dfrobust.utils.runtime import progress, seed_everything, versions

#: The ``setting`` of a target that is one of the ensemble the images were crafted on.
ENSEMBLE_MEMBER = "ensemble-member"
#: Per-image attack extras copied into results.csv (when the attack reports them).
EXTRA_COLUMNS = ("kappa_reached", "margin", "c", "c_lo", "c_hi", "adam_steps", "queries")


@dataclass
class AttackConfig:
    """Settings of one attack run (JSON-serialisable with :func:`dataclasses.asdict`).

    Attributes:
        attack: ``fgsm``, ``cw`` or ``pgd`` (see :func:`dfrobust.attacks.base.available_attacks`).
        params: the attack's parameters; missing ones take the paper's defaults, filled in on
            creation so that the stored config is complete.
        batch_size: images attacked together (one part file each, the unit of resume and sharding).
        classes: ``fake`` (the paper), ``real`` or ``both``: which test images are attacked.
        max_images: attack a seeded subset of at most this many images.
        seed: seeds the subset and any randomness of the attack.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        jpeg_quality: also evaluate after a JPEG round trip at this quality (reported beside).
        robust_to: a platform chain (:mod:`dfrobust.attacks.chain`) the attack's gradient is averaged
            over (EOT, :mod:`dfrobust.attacks.robust`); the images are also scored after it.
        heldout: a chain the attack does not see, scored too (default with ``robust_to``: ``DEFAULT_HELDOUT``).
        robust_eot: draws of the chain per gradient.
    """

    attack: str = "fgsm"
    params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    classes: str = "fake"
    max_images: int | None = None
    seed: int = 0
    device: str = "auto"
    jpeg_quality: int | None = None
    robust_to: str | None = None
    heldout: str | None = None
    robust_eot: int = 8

    def __post_init__(self) -> None:
        self.robust_to, self.heldout = platform.normalise_chains(self.robust_to, self.heldout, self.robust_eot)
        if self.classes not in CLASS_CHOICES:
            raise DfrobustError(f"--classes must be one of {sorted(CLASS_CHOICES)}, got {self.classes!r}")
        if self.batch_size < 1:
            raise DfrobustError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_images is not None and self.max_images < 1:
            raise DfrobustError(f"--max-images must be >= 1, got {self.max_images}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise DfrobustError(f"--jpeg-quality must lie in 1..100, got {self.jpeg_quality}")
        params = dict(self.params)
        attack = make_attack(self.attack, **params)
        if "seed" in attack.settings and "seed" not in params:
            params["seed"] = self.seed
            attack = make_attack(self.attack, **params)
        self.params = {k: v for k, v in attack.settings.items() if k != "attack"}

    def make(self, batch: int = 0) -> Attack:
        """The configured attack; a seeded attack gets seed ``params.seed + batch`` (independent of sharding)."""
        params = dict(self.params)
        if "seed" in params:
            params["seed"] = int(params["seed"]) + batch
        return make_attack(self.attack, **params)


@dataclass
class _Model:
    name: str
    path: Path | None  # None: an ensemble (its members have paths)
    sha256: str
    model: nn.Module
    members: list[_Model] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What summary.json says of the model: path and sha256, or an ensemble's sha256 and members."""
        if self.members:
            return {"sha256": self.sha256, "members": {m.name: m.record() for m in self.members}}
        return {"path": str(self.path), "sha256": self.sha256}

    def setting(self, src: _Model) -> str:
        """``whitebox`` on the source itself, ``ensemble-member`` on a member of an ensemble source, else ``blackbox``."""
        if self is src:
            return "whitebox"
        return ENSEMBLE_MEMBER if any(m is self for m in src.members) else "blackbox"


def _load_models(
    sources: list[Path], targets: list[Path], device: torch.device, size: tuple[int, int], source_name: str | None = None
) -> tuple[_Model, list[_Model]]:
    """Load the source (one model, or the ensemble of several) and the targets; the source is always
    evaluated too, first when not listed. Each file is loaded once."""
    if not sources:
        raise DfrobustError("give at least one --source model")
    if len(sources) == 1 and source_name is not None:
        raise DfrobustError("--source-name names an ensemble; give two or more --source (one model keeps its own name)")
    if len(sources) > 1:  # before loading anything: a mismatch is not the data's fault
        check_input_sizes({model_display_name(p): model_input_size(p) for p in sources})
    seen: dict[str, _Model] = {}

    def load(path: Path) -> _Model:
        name = model_display_name(path)
        if name in seen:
            if Path(seen[name].path or "").resolve() == path.resolve():
                return seen[name]
            raise DfrobustError(
                f"two models are named {name!r} ({seen[name].path} and {path}); model names are file stems or card names, rename one"
            )
        model, meta = load_model_arg(path, device=device, expect_input_size=size)  # a card resizes inside: any size
        seen[name] = _Model(name, path, meta["sha256"], model)
        return seen[name]

    if len(sources) == 1:
        paths = list(targets)
        if not any(p.resolve() == sources[0].resolve() for p in paths):
            paths.insert(0, sources[0])
        loaded = list({id(m): m for m in map(load, paths)}.values())
        return load(sources[0]), loaded
    return _load_ensemble(sources, targets, device, size, source_name, load)


def _load_ensemble(sources: list[Path], targets: list[Path], device: torch.device, size: tuple[int, int], source_name: str | None,
                   load: Callable[[Path], _Model]) -> tuple[_Model, list[_Model]]:  # fmt: skip
    """The :class:`LogitEnsemble` of ``sources`` as the source model, then the targets (members loaded once)."""
    members: list[_Model] = [load(p) for p in sources]
    names = [m.name for m in members]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DfrobustError(f"--source {twice[0]} is given twice; list each ensemble member once")
    check_output_shapes({m.name: m.model for m in members}, torch.zeros(1, 3, *size, device=device))
    name = source_name or ensemble_name(names)
    loaded = list({id(m): m for m in map(load, targets)}.values())
    if any(m.name == name for m in loaded):
        raise DfrobustError(f"the ensemble's name {name!r} is also a target's; choose another --source-name")
    identity = {"ensemble": name, "members": [[m.name, m.sha256] for m in members]}  # member order and the name
    src = _Model(
        name, None, sha256_bytes(to_json(identity).encode()), LogitEnsemble([m.model for m in members]).to(device).eval(), members=members
    )
    return src, [src, *loaded]


def png_name(rel: str) -> str:
    """Where an image's adversarial version goes under ``images/`` (same relative path, ``.png``)."""
    return str(Path(rel).with_suffix(".png"))


def _scores(
    models: list[_Model], images: dict[str, torch.Tensor], batch_size: int, device: torch.device
) -> dict[str, dict[str, torch.Tensor]]:
    """``P(real)`` of every model on every named image batch: ``{model: {name: N scores}}``."""
    return {m.name: {k: p_real(m.model, v, batch_size, device) for k, v in images.items()} for m in models}


#: Columns of a result row that depend on the target model; every other column describes the crafted image.
TARGET_COLUMNS = ("target", "setting", "clean_p_real", "adv_p_real", "clean_pred", "adv_pred", "success",
                  "jpeg_quality", "jpeg_p_real", "jpeg_pred", "jpeg_clean_pred", *platform.PLATFORM_COLUMNS)  # fmt: skip


#: Per-image distances, placed between the prediction columns and ``success`` in a result row.
IMAGE_METRICS = ("l2", "linf", "psnr", "ssim")


def _batch_slice(cfg: AttackConfig, batch: int) -> slice:
    return slice(batch * cfg.batch_size, (batch + 1) * cfg.batch_size)


def _attack_batch(
    cfg: AttackConfig, batch: int, images: ImageSet, src: _Model, models: list[_Model], device: torch.device, out_dir: Path
) -> list[dict[str, Any]]:
    """Attack one batch, save its PNGs, evaluate every model; returns its result rows."""
    sl = _batch_slice(cfg, batch)
    x, y, paths = images.images(sl), images.y[sl], images.paths[sl]
    attack = cfg.make(batch)
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
    groups = [r.get("group") for r in images.records[sl]]  # the generator of a nested in-place folder
    if any(groups):
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
            "attack_success": int(result.success[i]),  # on the float image, before quantisation
            **{k: int(v[i]) if isinstance(v[i], bool) else v[i] for k, v in extras.items()},
        })  # fmt: skip
    return _target_rows(cfg, crafted, x, x_adv, src, models, device)


def _target_rows(
    cfg: AttackConfig,
    crafted: list[dict[str, Any]],
    x: torch.Tensor,
    x_adv: torch.Tensor,
    src: _Model,
    models: list[_Model],
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


def _rescore_part(
    cfg: AttackConfig, unit: Unit, part: Path, images: ImageSet, src: _Model, models: list[_Model], device: torch.device, out_dir: Path
) -> list[dict[str, Any]]:
    """Re-evaluate a finished batch on a new set of targets from its stored PNGs (no crafting); its new rows."""
    rows = read_csv(part)
    crafted = [{k: v for k, v in r.items() if k not in TARGET_COLUMNS} for r in rows if r["setting"] == "whitebox"]
    if [c["image"] for c in crafted] != images.paths[unit.slice]:
        raise DfrobustError(f"{part} does not hold this run's images; delete {out_dir} and rerun")
    x_adv = torch.stack([load_image(out_dir / "images" / png_name(c["image"])) for c in crafted])
    return _target_rows(cfg, crafted, images.images(unit.slice), x_adv, src, models, device)


def _craft_key(cfg: AttackConfig, data_hash: str, src: _Model, images: ImageSet) -> str:
    """What the crafted images depend on: config (minus device), data, source model and chosen images."""
    # a run without a chain keeps the key it had before chains existed
    cfg_key = {k: v for k, v in asdict(cfg).items() if k != "device" and (cfg.robust_to or k not in platform.PLATFORM_FIELDS)}
    key = {"config": cfg_key, "data": data_hash, "source": src.sha256, "images": images.paths}
    return sha256_bytes(to_json(key).encode())


def _fingerprint(craft: str, models: list[_Model]) -> str:
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

    Returns:
        ``summary.json``'s content once every batch is done, else
        ``{"complete": False, "batches_done", "batches_total", "out_dir", "rank", "world_size"}``.

    >>> run_attack("data/synth", "models/vgg16.safetensors",
    ...            ["models/vgg16.safetensors", "models/resnet18.safetensors"],
    ...            AttackConfig("fgsm"), "attacks/fgsm-vgg16")  # doctest: +SKIP
    >>> run_attack("data/synth", ["models/vgg16.safetensors", "models/resnet18.safetensors"],
    ...            ["models/resnet18-blur.safetensors"], AttackConfig("dimifgsm"), "attacks/dimifgsm-ens")  # doctest: +SKIP
    """
    sources = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    ctx = distributed.shard(rank, world_size, cfg.device)
    data_dir, out_dir = Path(data_dir), require_own_folder(out_dir, "attack", legacy=["run.json"])
    device = distributed.device_for(cfg.device, ctx)
    seed_everything(cfg.seed)
    # a dfrobust dataset folder, or the user's folder/list read in place (data/layouts.py)
    images, data_hash = load_images(data_dir, "test", CLASS_CHOICES[cfg.classes], limit=cfg.max_images, seed=cfg.seed)
    src, models = _load_models(sources, [Path(t) for t in targets], device, images.image_size, source_name)
    craft = _craft_key(cfg, data_hash, src, images)
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
    bar = progress(total=len(mine), initial=len(mine) - len(todo), desc=f"{cfg.attack} on {src.name}", unit="batch")
    for unit in todo:
        part, mark = store.path(unit, ".csv"), store.read_mark(unit)
        if mark is not None and mark.get("craft") == craft and part.is_file():
            rows = _rescore_part(cfg, unit, part, images, src, models, device, out_dir)
        else:
            rows = _attack_batch(cfg, unit.index, images, src, models, device, out_dir)
        write_csv(part, rows, RESULT_COLUMNS)
        store.finish(unit, ctx.rank, ctx.world_size, craft=craft)  # the mark, last
        whitebox = [r for r in rows if r["target"] == src.name]
        done_ok += sum(int(r["success"]) for r in whitebox)
        done_n += len(whitebox)
        bar.set_postfix(success=f"{done_ok / max(done_n, 1):.0%}")
        bar.update()
    bar.close()

    summary = distributed.merge_once(
        ctx, store.complete, lambda: _merge(out_dir, store, cfg, fingerprint, data_dir, data_hash, images, src, models, ctx), merged
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
    src: _Model,
    models: list[_Model],
    ctx: distributed.Context,
) -> dict[str, Any]:
    """Join the parts (in the global image order) into results.csv, table2.csv and summary.json (written last)."""
    rows = store.merge(lambda unit: read_csv(store.path(unit, ".csv")))
    write_csv(out_dir / "results.csv", rows, RESULT_COLUMNS)
    table = table2_rows(rows)
    write_csv(out_dir / "table2.csv", table)
    whitebox = [r for r in rows if r["setting"] == "whitebox"]
    crafting: dict[str, Any] = {
        "attack_success_rate": sum(int(r["attack_success"]) for r in whitebox) / len(whitebox),
        "seconds_per_image": sum(float(r["seconds"]) for r in whitebox) / len(whitebox),
    }
    if whitebox and "kappa_reached" in whitebox[0]:
        crafting["kappa_reached_rate"] = sum(int(float(r["kappa_reached"])) for r in whitebox) / len(whitebox)
    attack = cfg.make()
    results = target_aggregates(rows)
    platform.add_platform_results(results, rows)  # after --robust-to: accuracy after the chain and the held-out chain
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
        "results": results,
        "world_size": ctx.world_size,
        "ranks": store.ranks(),
        "versions": versions(),
    }
    write_json(out_dir / "summary.json", summary)
    return summary
