"""The DIP study's images: score the test split and the attacked images, draw the categories, load what DIP fits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from dfrobust.data.dataset import ImageSet
from dfrobust.data.layouts import load_images
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
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.metrics import predict
from dfrobust.models.inference import p_real
from dfrobust.studies.dip_config import DipStudyConfig
from dfrobust.utils.io import load_image, read_json, sha256_bytes, sha256_file, to_json, write_json


@dataclass
class StudyInputs:
    """The planned study: its images and what is needed to purify and score them."""

    items: list[StudyItem]
    inputs: torch.Tensor  #: N x 3 x H x W, what DIP fits (adversarial or clean)
    clean: torch.Tensor  #: N x 3 x H x W, the clean test images
    attacks: list[AttackFolder]
    notes: list[str]
    candidates: dict[str, int]


def batched_p_real(model: torch.nn.Module, images: ImageSet | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
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
    clean_p = batched_p_real(model, test)
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
