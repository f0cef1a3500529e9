"""Import any folder of real and fake images as a dataset folder.

Accepted layouts (folder names case-insensitive, images may sit in sub-folders)::

    SRC/real/...  SRC/fake/...                               split made here (stratified)
    SRC/train/real/ SRC/train/fake/ SRC/test/real/ SRC/test/fake/   the given split is kept
    0_real/ and 1_fake/ (CNNDetection's names) in place of real/ and fake/

Any image Pillow reads (JPEG, PNG, WebP, BMP; greyscale, palette, RGBA, 16-bit) becomes an
8-bit RGB PNG, centre-cropped to a square and resized to one size. Unreadable or truncated
files are skipped and listed in the manifest (``import.skipped``), never a crash half-way.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dfrobust.constants import CLASS_NAMES, FAKE, MAX_IMAGE_SIDE, REAL
from dfrobust.data.images import IMAGE_EXTENSIONS, fit_square, list_images, read_error, read_rgb
from dfrobust.data.layouts import CLASS_FOLDERS
from dfrobust.data.manifest import MANIFEST, SPLITS, DatasetWriter, check_disjoint, check_out_dir, count_records, stratified_split
from dfrobust.data.provenance import finished_dataset, is_dataset_folder, library_versions
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import read_json, sha256_bytes, to_json
from dfrobust.utils.runtime import progress

__all__ = ["import_folder", "import_report", "is_dataset_folder", "scan_source", "SourceImage"]

LAYOUT_HINT = (
    "expected SRC/real/ and SRC/fake/ (or 0_real/ and 1_fake/), or SRC/train/{real,fake}/ and SRC/test/{real,fake}/; "
    "generator folders are read in place by --detector, evaluate and attack"
)
IMBALANCE_RATIO = 1.5  # a class this many times larger than the other is reported


@dataclass(frozen=True)
class SourceImage:
    """One candidate image: its file, path relative to the source folder, class and given split (or ``None``)."""

    path: Path
    rel: str
    label: int
    split: str | None


def _subdirs(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _class_folders(folder: Path, src: Path) -> dict[int, Path]:
    dirs = _subdirs(folder)
    # real/fake, or CNNDetection's 0_real/1_fake (the first name found wins)
    found = {
        label: next((dirs[n] for n in sorted(CLASS_FOLDERS) if CLASS_FOLDERS[n] == label and n in dirs), None)
        for label in range(len(CLASS_NAMES))
    }
    missing = [CLASS_NAMES[k] for k, v in found.items() if v is None]
    if missing:
        where = folder.relative_to(src.parent) if folder != src else src
        raise DfrobustError(f"{where} has no {' or '.join(m + '/' for m in missing)} folder; {LAYOUT_HINT}")
    return found  # type: ignore[return-value]


def scan_source(src: str | Path) -> tuple[str, list[SourceImage]]:
    """Find the layout (``"flat"`` or ``"split"``) and every candidate image of a source folder.

    Raises a one-line :class:`DfrobustError` for a missing folder, a missing or empty class,
    or a folder without the expected layout.
    """
    src = Path(src)
    if not src.is_dir():
        raise DfrobustError(f"source folder {src} does not exist; {LAYOUT_HINT}")
    dirs = _subdirs(src)
    if "train" in dirs or "test" in dirs:
        if set(dirs) & set(CLASS_FOLDERS):
            raise DfrobustError(f"{src} mixes real/fake and train/test folders; use one layout: {LAYOUT_HINT}")
        missing = [s for s in SPLITS if s not in dirs]
        if missing:
            raise DfrobustError(f"{src} has no {missing[0]}/ folder; {LAYOUT_HINT}")
        layout, groups = "split", [(split, _class_folders(dirs[split], src)) for split in SPLITS]
    elif set(dirs) & set(CLASS_FOLDERS):
        layout, groups = "flat", [(None, _class_folders(src, src))]
    else:
        loose = len([p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS])
        found = f"found {loose} images directly in {src} but no class folders" if loose else f"found no images in {src}"
        raise DfrobustError(f"{found}; {LAYOUT_HINT}")
    images: list[SourceImage] = []
    for split, folders in groups:
        for label in (FAKE, REAL):
            files = list_images(folders[label])
            if not files:
                exts = " ".join(IMAGE_EXTENSIONS)
                raise DfrobustError(f"{folders[label]} has no images ({exts}); every class needs images: {LAYOUT_HINT}")
            images += [SourceImage(p, p.relative_to(src).as_posix(), label, split) for p in files]
    return layout, images


def _header_size(path: Path) -> tuple[int, int] | str:
    """``(width, height)`` from the file header, or the reason it cannot be opened."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return read_error(exc)


def _load(item: SourceImage, size: int) -> tuple[np.ndarray | None, str]:
    try:
        return fit_square(read_rgb(item.path), size), ""
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, read_error(exc)


def _imbalance(counts: dict[str, dict[str, int]]) -> dict[str, Any] | None:
    totals = {c: sum(counts[s][c] for s in SPLITS) for c in CLASS_NAMES}
    big, small = max(totals, key=totals.get), min(totals, key=totals.get)  # type: ignore[arg-type]
    ratio = totals[big] / max(1, totals[small])
    if ratio < IMBALANCE_RATIO:
        return None
    return {"larger": big, "ratio": round(ratio, 2), "counts": totals,
            "note": f"class imbalance: {totals[big]} {big} vs {totals[small]} {small} ({ratio:.1f}:1); "
                    "accuracy favours the larger class, look at AUROC and per-class recall"}  # fmt: skip


def import_folder(
    src: str | Path,
    out_dir: str | Path,
    size: int | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Import a folder of real/fake images (see the module doc for layouts) as a dataset folder.

    Args:
        src: the source folder.
        out_dir: the dataset folder to create.
        size: output side in pixels; default: the shorter side of the most common image size.
        test_fraction: fraction of each class put in test (flat layout only; a given split is kept).
        seed: seed of that split.
        overwrite: replace an existing folder made from other settings.

    Returns the dataset folder; :func:`import_report` gives what was skipped and any class
    imbalance. A folder already imported with the same arguments from the same files is kept.

    >>> import_folder("my_faces", "data/mine", size=128)  # doctest: +SKIP
    """
    src = Path(src)
    layout, items = scan_source(src)
    check_disjoint(src, out_dir)
    if size is not None and not 8 <= size <= MAX_IMAGE_SIDE:
        raise DfrobustError(f"--size must be between 8 and {MAX_IMAGE_SIDE} pixels, got {size}")
    fingerprint = sha256_bytes(to_json([(i.rel, i.path.stat().st_size) for i in items]).encode())
    args = {"source": str(src.resolve()), "size": size, "test_fraction": test_fraction, "seed": seed}
    flags = f"--size {size} " if size else ""
    created_by = {
        "command": f"dfrobust data import {src} {flags}--test-fraction {test_fraction} --seed {seed}",
        "generator": "import", "args": args, "source_fingerprint": fingerprint, "versions": library_versions(),
    }  # fmt: skip
    done = finished_dataset(out_dir, created_by)
    if done is not None:
        return done
    check_out_dir(out_dir, overwrite)

    skipped: list[dict[str, str]] = []
    sizes: dict[str, tuple[int, int]] = {}
    for item in items:
        got = _header_size(item.path)
        if isinstance(got, str):
            skipped.append({"path": item.rel, "reason": got})
        else:
            sizes[item.rel] = got
    items = [i for i in items if i.rel in sizes]
    for label in (FAKE, REAL):
        if not any(i.label == label for i in items):
            raise DfrobustError(f"no readable {CLASS_NAMES[label]} images in {src} ({len(skipped)} unreadable files); {LAYOUT_HINT}")
    if size is None:
        (w, h), _ = Counter(sizes[i.rel] for i in items).most_common(1)[0]
        size, size_rule = min(w, h), f"shorter side of the most common size {w}x{h}"
    else:
        size_rule = "given"
    splits = stratified_split([i.label for i in items], test_fraction, seed) if layout == "flat" else [i.split for i in items]

    writer = DatasetWriter(out_dir, created_by=created_by, overwrite=overwrite)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool, progress(total=len(items), desc="import", unit="img") as bar:
            for start in range(0, len(items), 64):  # bounded memory: 64 decoded images at a time
                batch = list(zip(items[start : start + 64], splits[start : start + 64]))
                for (item, split), (img, err) in zip(batch, pool.map(lambda b: _load(b[0], size), batch)):
                    if img is None:
                        skipped.append({"path": item.rel, "reason": err})
                    else:
                        w, h = sizes[item.rel]
                        writer.add(img, item.label, split, source=item.rel, original_size=[w, h])
                    bar.update(1)
        counts = count_records(writer.records)
        for split in SPLITS:
            for name in CLASS_NAMES:
                if counts[split][name] == 0:
                    raise DfrobustError(
                        f"the {split} split has no readable {name} images after skipping {len(skipped)} files; "
                        f"add images or change --test-fraction; {LAYOUT_HINT}"
                    )
        info = {"layout": layout, "size": size, "size_rule": size_rule, "n_skipped": len(skipped),
                "skipped": sorted(skipped, key=lambda s: s["path"]), "imbalance": _imbalance(counts)}  # fmt: skip
        return writer.close(**{"import": info})
    except BaseException:
        writer.abort()
        raise


def import_report(data_dir: str | Path) -> dict[str, Any]:
    """What :func:`import_folder` recorded: ``layout``, ``size``, ``size_rule``, ``n_skipped``,
    ``skipped`` (``[{"path", "reason"}]``) and ``imbalance`` (``None`` when balanced)."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DfrobustError(f"{data_dir} is not a dataset folder (no {MANIFEST})")
    report = read_json(path).get("import")
    if report is None:
        raise DfrobustError(f"{data_dir} was not made by `dfrobust data import`; it has no import report")
    return report
