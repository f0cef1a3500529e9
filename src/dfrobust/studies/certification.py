"""The certification stage: randomized-smoothing certificates of a detector on a dataset's test images.

``run_certification(data_dir, model, cfg, out_dir)`` writes::

    OUT/certify.csv    one row per image: image, label, prediction (-1 = abstain), correct, radius,
                       pA_lower, count_fake, count_real (of the n estimation samples), n
    OUT/curve.csv      certified accuracy vs L2 radius (every radius where it changes), with n and
                       Wilson 95% intervals
    OUT/summary.json   settings, model, data, certified accuracy at :data:`REPORT_RADII` with
                       Wilson 95% intervals, abstentions
    OUT/run.json, OUT/parts/   this run's fingerprint and its finished parts (resume)

Images are certified in parts of :data:`PART_IMAGES`, each part with its own seed: the units of
:class:`dfrobust.utils.parts.PartStore`, so an interrupted run resumes from its finished parts,
and under torchrun the ranks share the parts (rank 0 merges); the rows are an uninterrupted
one-process run's.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dfrobust.constants import CLASS_NAMES
from dfrobust.data.layouts import CLASS_CHOICES, load_images
from dfrobust.defenses.smoothing import ABSTAIN, certify
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.models.checkpoint import load_detector, model_name
from dfrobust.utils import distributed
from dfrobust.utils.io import read_csv, read_record, sha256_file, to_json, write_csv, write_json
from dfrobust.utils.parts import PartStore
from dfrobust.utils.runtime import progress

#: Test images per class choice.

#: L2 radii at which summary.json reports certified accuracy (pixels in [0, 1]).
REPORT_RADII = (0.0, 0.25, 0.5, 1.0)

#: Images per part file (the unit of resume and of seeding).
PART_IMAGES = 32

#: Columns of certify.csv, in order.
COLUMNS = ("image", "label", "prediction", "correct", "radius", "pA_lower", "count_fake", "count_real", "n")

#: Settings that change how the run executes but not its results.
EXECUTION_FIELDS = ("device",)

Log = Callable[[str], None]


@dataclass
class CertifyConfig:
    """Settings of a certification run (Cohen et al.'s defaults where they have one, ``n`` smaller)."""

    sigma: float = field(
        default=0.25,
        metadata={
            "metavar": "SIGMA",
            "help": (
                "noise level of the smoothed classifier, in [0, 1] pixel units (Cohen et al.: 0.25, 0.5, 1.0); "
                "certify a model trained with the same --noise-sigma"
            ),
        },
    )
    n0: int = field(default=100, metadata={"metavar": "N0", "help": "noise samples per image that pick its top class"})
    n: int = field(
        default=1000,
        metadata={
            "metavar": "N",
            "help": (
                "noise samples per image that bound the top class's probability (Cohen et al.: 100,000; "
                "10,000 is common; the largest certifiable radius grows with it)"
            ),
        },
    )
    alpha: float = field(default=0.001, metadata={"help": "failure probability of each certificate"})
    classes: str = field(default="both", metadata={"choices": tuple(CLASS_CHOICES), "help": "test images to certify"})
    max_images: int | None = field(
        default=None, metadata={"metavar": "N", "help": ("certify a seeded subset of N test images; omitted: all")}
    )
    batch_size: int = field(default=256, metadata={"help": "noisy images per forward pass (changes which noise each image gets)"})
    seed: int = field(default=0, metadata={"help": "random seed of the noise and of the image subset"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu, cuda or cuda:N"})

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise DfrobustError(f"--sigma must be positive, got {self.sigma}")
        if self.n0 < 1 or self.n < 1:
            raise DfrobustError(f"--n0 and --n must be at least 1, got {self.n0} and {self.n}")
        if not 0 < self.alpha < 1:
            raise DfrobustError(f"--alpha must lie in (0, 1), got {self.alpha}")
        if self.classes not in CLASS_CHOICES:
            raise DfrobustError(f"--classes must be one of {tuple(CLASS_CHOICES)}, got {self.classes!r}")
        if self.max_images is not None and self.max_images < 1:
            raise DfrobustError(f"--max-images must be at least 1, got {self.max_images}")
        if self.batch_size < 1:
            raise DfrobustError(f"--batch-size must be at least 1, got {self.batch_size}")

    def identity(self) -> dict[str, Any]:
        """The settings that determine the results (without :data:`EXECUTION_FIELDS`)."""
        return {k: v for k, v in asdict(self).items() if k not in EXECUTION_FIELDS}


def part_seed(seed: int, part: int) -> int:
    """The noise seed of part ``part``: a function of the run's seed and the part only."""
    return seed * 1_000_003 + part


def certified_accuracy(rows: list[dict[str, Any]], radius: float) -> dict[str, Any]:
    """Share of ``rows`` correctly classified and certified at L2 ``radius`` or more, with n and a Wilson 95% interval."""
    k = sum(1 for r in rows if int(r["correct"]) and float(r["radius"]) >= radius)
    lo, hi = wilson_interval(k, len(rows))
    return {"radius": radius, "accuracy": k / len(rows) if rows else 0.0, "certified": k, "n": len(rows), "ci_low": lo, "ci_high": hi}


def accuracy_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Certified accuracy at radius 0 and at every certified radius of a correct image (where the curve steps down).

    The accuracy at radius ``r`` counts images certified at ``r`` or more: the curve holds each
    row's value on the radii up to that row's radius.
    """
    radii = sorted({0.0} | {float(r["radius"]) for r in rows if int(r["correct"])})
    out = []
    for radius in radii:
        point = certified_accuracy(rows, radius)
        out.append(
            {
                "radius": radius,
                "certified_accuracy": point["accuracy"],
                "certified": point["certified"],
                "n": point["n"],
                "ci_low": point["ci_low"],
                "ci_high": point["ci_high"],
            }
        )
    return out


def _default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _claim(out_dir: Path, fingerprint: str, record: dict[str, Any]) -> None:
    """Make ``out_dir`` this run's folder: new, or one of this run (anything else is refused, nothing deleted)."""
    run_file = out_dir / "run.json"
    if run_file.is_file():
        if read_record(run_file).get("fingerprint") != fingerprint:
            raise DfrobustError(f"{out_dir} holds another certify run (other settings, model or data); choose another --out")
        return
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise DfrobustError(f"{out_dir} is not empty and holds no certify run; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_file, {"fingerprint": fingerprint, **record})


def run_certification(
    data_dir: str | Path, model_path: str | Path, cfg: CertifyConfig, out_dir: str | Path, log: Log | None = None
) -> dict[str, Any]:
    """Certify the smoothed ``model_path`` on the test images of ``data_dir``; returns summary.json's content.

    >>> run_certification("data/synth", "models/resnet18-smooth.safetensors", CertifyConfig(sigma=0.25), "certify/smooth")  # doctest: +SKIP
    """
    log = log or _default_log
    data_dir, model_path, out_dir = Path(data_dir), Path(model_path), Path(out_dir)
    if not data_dir.exists():
        raise DfrobustError(f"data folder {data_dir} does not exist; make one with `dfrobust data synth --out {data_dir}`")
    started = time.time()
    ctx = distributed.setup(cfg.device)  # torchrun: the ranks share the parts
    # a dataset folder, or the user's folder or list read in place
    images, data_hash = load_images(data_dir, "test", CLASS_CHOICES[cfg.classes], limit=cfg.max_images, seed=cfg.seed)
    device = distributed.device_for(cfg.device, ctx)
    model, meta = load_detector(model_path, device, expect_input_size=images.image_size)
    trained_sigma = float(meta.get("training", {}).get("noise_sigma", 0.0) or 0.0)
    if trained_sigma != cfg.sigma:
        log(f"note: {model_path.name} was trained with noise sigma {trained_sigma:g}, certified at sigma {cfg.sigma:g}")
    record = {
        "config": cfg.identity(),
        "model": {
            "name": model_name(model_path),
            "path": str(model_path),
            "sha256": sha256_file(model_path),
            "training_noise_sigma": trained_sigma,
        },
        "data": {"dir": str(data_dir), "manifest_hash": data_hash, "split": "test", "classes": cfg.classes},
        "images": images.paths,
    }
    fingerprint = hashlib.sha256(to_json(record).encode()).hexdigest()
    summary_file = out_dir / "summary.json"
    done = read_record(summary_file) if summary_file.is_file() else None
    if (done := distributed.broadcast(done if done and done.get("fingerprint") == fingerprint else None, ctx)) is not None:
        log(f"{out_dir} already holds this certification; nothing to do")
        return done
    if ctx.is_main:
        _claim(out_dir, fingerprint, {k: v for k, v in record.items() if k != "images"})
    distributed.barrier(ctx)

    store = PartStore(out_dir / "parts", fingerprint, len(images), PART_IMAGES, seed=cfg.seed, payloads=(".csv",))
    bar = progress(store.todo(ctx.rank, ctx.world_size), desc=f"certify {model_path.stem}", unit="part")
    for unit in bar:
        k, sl = unit.index, unit.slice
        cert = certify(model, images.images(sl), cfg.sigma, cfg.n0, cfg.n, cfg.alpha, cfg.batch_size, part_seed(cfg.seed, k))
        rows = []
        for i, path in enumerate(images.paths[sl]):
            label, pred = int(images.y[sl][i]), int(cert.prediction[i])
            rows.append(
                {
                    "image": path,
                    "label": label,
                    "prediction": pred,
                    "correct": int(pred == label),
                    "radius": float(cert.radius[i]),
                    "pA_lower": float(cert.pa_lower[i]),
                    "count_fake": int(cert.counts[i, CLASS_NAMES.index("fake")]),
                    "count_real": int(cert.counts[i, CLASS_NAMES.index("real")]),
                    "n": cfg.n,
                }
            )
        write_csv(store.path(unit, ".csv"), rows, COLUMNS)
        store.finish(unit, ctx.rank, ctx.world_size)

    def merged() -> dict[str, Any] | None:
        summary = read_record(summary_file) if summary_file.is_file() else None
        return summary if summary is not None and summary.get("fingerprint") == fingerprint else None

    summary = distributed.merge_once(ctx, store.complete, lambda: _merge(store, out_dir, record, cfg, fingerprint, started, ctx), merged)
    if summary is None:
        raise DfrobustError(f"{len(store.missing())} part(s) of {out_dir} are missing; run the same command again to finish them")
    return summary


def _merge(store: PartStore, out_dir: Path, record: dict[str, Any], cfg: CertifyConfig, fingerprint: str, started: float,
           ctx: distributed.Context) -> dict[str, Any]:  # fmt: skip
    """Join the parts (in image order) into certify.csv, curve.csv and summary.json (written last)."""
    rows = store.merge(lambda unit: read_csv(store.path(unit, ".csv")))
    write_csv(out_dir / "certify.csv", rows, COLUMNS)
    write_csv(out_dir / "curve.csv", accuracy_curve(rows))
    correct_radii = [float(r["radius"]) for r in rows if int(r["correct"])]
    summary = {
        **{k: v for k, v in record.items() if k != "images"},
        "settings": asdict(cfg),
        "n_images": len(rows),
        "abstained": sum(1 for r in rows if int(r["prediction"]) == ABSTAIN),
        "certified_accuracy": [certified_accuracy(rows, r) for r in REPORT_RADII],
        "median_radius_correct": sorted(correct_radii)[len(correct_radii) // 2] if correct_radii else None,
        "fingerprint": fingerprint,
        "seconds": time.time() - started,
        "world_size": ctx.world_size,
        "ranks": store.ranks(),
    }
    write_json(out_dir / "summary.json", summary)
    return summary
