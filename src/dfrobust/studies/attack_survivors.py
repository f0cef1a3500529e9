"""Survivors-only attack runs: AutoAttack's chain, where a later attack attacks only the images no earlier one fooled.

A run given earlier attack folders (``run_attack(..., survivors_of=[apgd_dir])``, ``dfrobust attack
--survivors-of DIR``, a preset's ``[attack.square] survivors_of = ["apgd"]``) reads their
``results.csv`` and skips, on the same source, every image whose whitebox row there counts as a
success: the source's verdict on the stored 8-bit PNG, the project's one success definition. Such an
image gets one row (the source's, whitebox) with ``skipped = "fooled by <label>"`` (the first
earlier attack that fooled it) and no adversarial columns; the images the run attacks get their
usual rows, all with ``survivors_of`` naming the earlier attacks. Nothing else changes: batches
hold the same images as without the chain, so resuming and sharding are unchanged; a batch
attacks its survivors together.

The run's images are drawn from those every earlier run saw (:func:`chain_images`): its own
``max_images`` takes a seeded subset of them, not of the whole split, so that the suite covers the same
images (two seeded subsets of different sizes share only a few images). Robust accuracy
(:func:`dfrobust.evaluate.robustness.robust_accuracy`) counts a skipped image as fooled, and leaves out
an image some attack of the suite neither attacked nor skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfrobust.data.dataset import ImageSet
from dfrobust.errors import DfrobustError
from dfrobust.studies.attack_tables import RESULT_COLUMNS, SKIPPED, SURVIVORS_OF, is_attacked
from dfrobust.utils.io import read_csv, read_record

#: The columns a skipped image's row copies from the earlier attack's row of the same image (same source, clean image).
CLEAN_COLUMNS = ("label", "clean_p_real", "clean_pred")


@dataclass
class Survivors:
    """What the earlier attacks of a chain decided for a run's images.

    Attributes:
        labels: the earlier attacks' result labels, in chain order (the ``survivors_of`` column, ``+``-joined).
        fooled: image -> ``fooled by <label>`` for every image some earlier attack fooled on this source.
        clean: image -> the earlier row's ``label``, ``clean_p_real``, ``clean_pred`` (a skipped row's clean verdict).
        runs: each earlier run's crafting key (its ``run.json`` ``craft``): a changed earlier attack changes this run's key.
        seen: the images every earlier run attacked or skipped (``None`` before any run is read).
    """

    labels: list[str] = field(default_factory=list)
    fooled: dict[str, str] = field(default_factory=dict)
    clean: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    seen: set[str] | None = None

    @property
    def column(self) -> str:
        """The ``survivors_of`` value of this run's rows."""
        return "+".join(self.labels)

    def key(self, images: Sequence[str]) -> dict[str, Any]:
        """What the crafting depends on, for ``images`` (the run's): the earlier runs and which of the images they fooled."""
        chosen = set(images)
        return {"of": self.labels, "runs": self.runs, "fooled": {i: r for i, r in sorted(self.fooled.items()) if i in chosen}}


def read_survivors(folders: Sequence[str | Path], source: str) -> Survivors:
    """The images the finished attack runs in ``folders`` fooled on ``source`` (whitebox rows, ``success`` = 1).

    A folder that is no finished attack run, or whose attack was crafted on another source, is a one-line error:
    survivors are per source model.
    """
    out = Survivors()
    for folder in map(Path, folders):
        summary = read_record(folder / "summary.json") if (folder / "summary.json").is_file() else {}
        if not summary.get("complete") or not (folder / "results.csv").is_file():
            raise DfrobustError(f"{folder} is no finished attack run (no complete summary.json); run that attack first, then this one")
        sources = list(summary.get("source") or {})
        if sources != [source]:
            raise DfrobustError(
                f"{folder} was crafted on {', '.join(sources) or 'an unknown source'}, not on {source}: survivors are per source"
            )
        label = str(summary["attack"]["label"])
        out.labels.append(label)
        out.runs.append(str(read_record(folder / "run.json").get("craft", "")) if (folder / "run.json").is_file() else "")
        mine: set[str] = set()
        for r in read_csv(folder / "results.csv"):
            if r["setting"] != "whitebox" or r["target"] != source:
                continue
            image = r["image"]
            mine.add(image)
            out.clean.setdefault(image, {k: r[k] for k in CLEAN_COLUMNS})
            # a row the earlier run skipped names the attack that fooled it, itself earlier in the chain
            if is_attacked(r) and int(float(r["success"])) and image not in out.fooled:
                out.fooled[image] = f"fooled by {label}"
        out.seen = mine if out.seen is None else out.seen & mine
    return out


def chain_images(images: ImageSet, survivors: Survivors, max_images: int | None, seed: int) -> ImageSet:
    """The images of ``images`` (the whole split) that every earlier run saw, and of those a seeded subset of at most
    ``max_images`` (dataset order kept, the rule of :func:`dfrobust.data.layouts.load_images`): with the earlier
    runs' own ``max_images`` and seed, the same images as theirs."""
    seen = survivors.seen or set()
    idx = [i for i, p in enumerate(images.paths) if p in seen]
    if not idx:
        raise DfrobustError("the earlier attack runs of the chain attacked none of this run's images (another dataset or classes?)")
    if max_images is not None and max_images < len(idx):
        chosen = np.sort(np.random.default_rng(seed).choice(len(idx), size=max_images, replace=False))
        idx = [idx[int(i)] for i in chosen]
    return images.subset(idx)


def skipped_row(image: str, survivors: Survivors, attack: str, source: str, setting: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The one row of an image the run did not attack: its clean verdict, the reason, empty adversarial columns."""
    row: dict[str, Any] = {k: "" for k in RESULT_COLUMNS}
    row.update(image=image, attack=attack, source=source, target=source, setting=setting, **survivors.clean[image], **extra)
    row.update({SKIPPED: survivors.fooled[image], SURVIVORS_OF: survivors.column})
    return row
