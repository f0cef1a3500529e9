"""The DIP study's stratified subsample (paper section V-C), read from attack output folders.

Categories (``per_category`` images each, seeded, only images whose clean version the
classifier gets right):

* ``<attack>-<setting>/fake-wrong``: perturbed fakes the classifier calls real,
* ``<attack>-<setting>/fake-correct``: perturbed fakes it still calls fake,
  one pair per attack folder (``fgsm-blackbox``, ``cw-whitebox``, ...),
* ``clean/fake-correct`` and ``clean/real-correct``: unperturbed test images.

A category with fewer candidates takes all of them and the shortfall is reported.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfrobust.constants import DECISION_THRESHOLD, FAKE, REAL
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import model_name
from dfrobust.utils.io import read_csv, read_record, sha256_file

CLEAN_FAKE = "clean/fake-correct"
CLEAN_REAL = "clean/real-correct"


@dataclass
class AttackFolder:
    """The part of one attack output folder that concerns one classifier."""

    path: Path
    name: str  #: category prefix, e.g. ``fgsm-blackbox``
    target: str  #: the classifier's model name in ``results.csv``
    images: list[str]  #: dataset-relative paths of the attacked fake images (rows for the target)

    def image_path(self, rel: str) -> Path:
        """Where the adversarial PNG of dataset image ``rel`` lives (same relative path, ``.png``)."""
        return self.path / "images" / Path(rel).with_suffix(".png")


@dataclass
class StudyItem:
    """One image of the study: what is purified, what it is, and how the undefended classifier scored it."""

    key: str  #: unique id ``<category>/<image>``
    image: str  #: dataset-relative path of the underlying test image
    category: str
    label: int
    source: str  #: the attack folder the input comes from, or ``"clean"``
    baseline_p_real: float  #: classifier P(real) on the input as given
    seed: int = 0  #: seed of this image's DIP network

    def to_json(self) -> dict:
        """A JSON-friendly record."""
        return {k: getattr(self, k) for k in ("key", "image", "category", "label", "source", "baseline_p_real", "seed")}


@dataclass
class SamplePlan:
    """The sampled categories, in study order, and notes on those that could not be filled."""

    chosen: dict[str, list[str]]  #: category -> chosen image paths (sorted)
    candidates: dict[str, int]  #: category -> how many candidates there were
    requested: int
    notes: list[str] = field(default_factory=list)


def find_target(summary: Mapping, row_targets: set[str], model_path: Path, model_sha: str | None = None) -> str | None:
    """The name under which ``model_path`` appears in an attack folder: matched by sha256, then by file stem."""
    targets = summary.get("targets") or {}
    sha = model_sha or sha256_file(model_path)
    for name, info in targets.items():
        if isinstance(info, Mapping) and info.get("sha256") == sha:
            return str(name)
    stem = model_name(model_path)
    return stem if stem in row_targets or stem in targets else None


def read_attack_folder(
    adv_dir: str | Path, model_path: str | Path, model_sha: str | None = None, manifest: str | None = None
) -> AttackFolder:
    """Read ``results.csv`` + ``summary.json`` of an attack folder and keep the rows whose target is the classifier.

    Raises a one-line :class:`DfrobustError` when the folder is not an attack output, was made
    on another dataset (``manifest`` hash given and different), or holds no results for the model.
    """
    adv_dir, model_path = Path(adv_dir), Path(model_path)
    results = adv_dir / "results.csv"
    if not results.is_file():
        raise DfrobustError(f"{adv_dir} is not an attack output folder (no results.csv); make one with `dfrobust attack --out {adv_dir}`")
    summary = read_record(adv_dir / "summary.json") if (adv_dir / "summary.json").is_file() else {}
    rows = [r for r in read_csv(results) if not r.get("skipped")]  # a survivors-only run's skipped images have no PNG
    if manifest is not None:
        dataset = summary.get("dataset") if isinstance(summary.get("dataset"), Mapping) else {}
        theirs = dataset.get("manifest_hash") or summary.get("manifest_hash")
        if theirs and theirs != manifest:
            raise DfrobustError(f"{adv_dir} was made from another dataset (manifest hash differs); attack this --data again")
    target = find_target(summary, {r.get("target", "") for r in rows}, model_path, model_sha)
    mine = [r for r in rows if r.get("target") == target] if target else []
    if not mine:
        known = sorted(set(summary.get("targets") or {}) | {r.get("target", "") for r in rows})
        raise DfrobustError(
            f"{adv_dir} has no results for {model_name(model_path)} (its targets: {', '.join(known) or 'none'}); "
            f"attack with `--target {model_path}` or pass another --model"
        )
    names = Counter(f"{r.get('attack') or adv_dir.name}-{r.get('setting') or 'unknown'}" for r in mine)
    name = names.most_common(1)[0][0] if len(names) == 1 else adv_dir.name
    images = sorted({r["image"] for r in mine if int(float(r.get("label", FAKE))) == FAKE})
    return AttackFolder(adv_dir, name.lower(), str(target), images)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs, machines and Python versions)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_categories(candidates: Mapping[str, Sequence[str]], per_category: int, seed: int) -> SamplePlan:
    """Draw up to ``per_category`` images from each category's candidates, seeded per category.

    The draw of a category depends only on its name, its candidates and ``seed``, so adding an
    attack folder does not change the images chosen for the others. Chosen paths come sorted.
    """
    chosen: dict[str, list[str]] = {}
    notes = []
    for category, cands in candidates.items():
        pool = sorted(set(cands))
        rng = np.random.default_rng(stable_seed(seed, category))
        take = min(per_category, len(pool))
        picked = rng.choice(len(pool), size=take, replace=False) if take else np.array([], dtype=int)
        chosen[category] = sorted(pool[i] for i in picked)
        if take < per_category:
            notes.append(f"{category}: only {len(pool)} candidate(s), took {take} of {per_category}")
    return SamplePlan(chosen, {c: len(set(v)) for c, v in candidates.items()}, per_category, notes)


def category_candidates(
    test_paths: Sequence[str],
    test_labels: Sequence[int],
    clean_correct: Sequence[bool],
    attacks: Sequence[AttackFolder],
    adv_p_real: Mapping[str, Mapping[str, float]],
    threshold: float = DECISION_THRESHOLD,
) -> dict[str, list[str]]:
    """Candidates of every category, in study order.

    Args:
        test_paths, test_labels, clean_correct: the test split and whether the classifier gets
            each clean image right.
        attacks: the attack folders (their ``images`` restrict the perturbed candidates).
        adv_p_real: attack name -> image -> classifier P(real) on the adversarial image.
        threshold: P(real) at or above which the classifier says real.
    """
    ok = {p for p, c in zip(test_paths, clean_correct) if c}
    label = dict(zip(test_paths, test_labels))
    out: dict[str, list[str]] = {}
    for atk in attacks:
        scores = adv_p_real.get(atk.name, {})
        usable = [p for p in atk.images if p in ok and label.get(p) == FAKE and p in scores]
        out[f"{atk.name}/fake-wrong"] = [p for p in usable if scores[p] >= threshold]
        out[f"{atk.name}/fake-correct"] = [p for p in usable if scores[p] < threshold]
    out[CLEAN_FAKE] = [p for p in test_paths if p in ok and label[p] == FAKE]
    out[CLEAN_REAL] = [p for p in test_paths if p in ok and label[p] == REAL]
    return out


def unique_names(attacks: list[AttackFolder]) -> list[AttackFolder]:
    """Make attack names unique: a repeated name gets its folder name appended (``fgsm-blackbox-fgsm_vgg``)."""
    counts = Counter(a.name for a in attacks)
    for atk in attacks:
        if counts[atk.name] > 1:
            atk.name = f"{atk.name}-{atk.path.name}".lower()
    return attacks
