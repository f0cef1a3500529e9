"""Reading the user's own folder of real and fake images in place, without re-encoding it.

Accepted layouts (folder names case-insensitive, images may sit in sub-folders of a class folder)::

    DIR/real/ DIR/fake/                                   no split: every image is used
    DIR/{train,val,test}/{real,fake}/                     the given splits
    DIR/0_real/ DIR/1_fake/                               CNNDetection / UnivFD naming, same rules
    DIR/test/progan/0_real/ DIR/test/stylegan/1_fake/     one folder per generator: its name is the image's ``group``
    LIST.csv or LIST.json                                 path,label[,split][,group]; paths relative to the list

A dfrobust dataset folder (``manifest.json``) is read through its manifest. A list's labels are
``real``/``fake`` (or ``0_real``/``1_fake``): bare numbers are refused, since dfrobust's fake = 0
is CNNDetection's real = 0. Images are decoded lazily by :class:`LazyImageDataset` (a torch
``Dataset``; :func:`make_loader` adds workers and pinned memory on CUDA) and resized on the fly,
so memory does not grow with the number of images. Unreadable files are skipped and listed.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dfrobust.constants import CLASS_NAMES, FAKE, REAL
from dfrobust.data.dataset import ImageSet
from dfrobust.data.dataset import load_split as load_dataset_split
from dfrobust.data.images import IMAGE_EXTENSIONS, list_images, read_error, read_rgb
from dfrobust.data.tensors import tensor_image_set
from dfrobust.data.manifest import MANIFEST, manifest_hash, read_manifest
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import sha256_bytes, to_json
from dfrobust.utils.labels import DFROBUST_LABELS

#: Class-folder names (lower case) and their labels.
CLASS_FOLDERS = {"fake": FAKE, "real": REAL, "1_fake": FAKE, "0_real": REAL}
#: ``--classes`` choices of attack, certify, curves and adaptive runs, and the classes each reads.
CLASS_CHOICES = {"fake": ["fake"], "real": ["real"], "both": ["fake", "real"]}
#: Split-folder names (lower case).
SPLIT_NAMES = ("train", "val", "test")
#: How deep below the root class folders are looked for (split / generator / sub-generator).
MAX_DEPTH = 3
LIST_SUFFIXES = (".csv", ".json")
LAYOUT_HINT = (
    "expected real/ and fake/ (or 0_real/ and 1_fake/) folders, optionally under train/, val/, test/ and one "
    "folder per generator, or a .csv/.json list of path,label[,split][,group]"
)


@dataclass(frozen=True)
class Item:
    """One image of a layout: its file, its id (path relative to the root), class, split and group."""

    path: Path
    rel: str
    label: int
    split: str | None = None
    group: str | None = None

    def record(self) -> dict[str, Any]:
        """The image as a result-table record."""
        return {"path": self.rel, "label": self.label, "split": self.split, "group": self.group}


@dataclass
class Layout:
    """Every image of a data argument, found without opening a single image.

    Attributes:
        root: the folder image ids are relative to (the list's folder for a list).
        kind: ``"dfrobust"`` (a dataset folder), ``"folders"`` or ``"list"``.
        description: the layout in words (for logs and JSON outputs).
        items: the images, sorted by id.
        image_size: ``(H, W)`` shared by every image when known without reading (dfrobust datasets).
    """

    root: Path
    kind: str
    description: str
    items: list[Item]
    image_size: tuple[int, int] | None = None
    fingerprint_value: str | None = field(default=None, repr=False)

    @property
    def splits(self) -> list[str]:
        """The splits that occur (empty when the layout has none)."""
        return sorted({i.split for i in self.items if i.split})

    @property
    def groups(self) -> list[str]:
        """The groups (generators) that occur, sorted."""
        return sorted({i.group for i in self.items if i.group})

    def select(
        self,
        split: str | None = "test",
        classes: Sequence[str] | None = None,
        limit: int | None = None,
        seed: int = 0,
    ) -> list[Item]:
        """The images of ``split`` (every image when ``None``, or when the layout has no splits) and ``classes``.

        ``limit`` keeps a seeded random subset (order preserved). A one-line error when nothing is left.
        """
        items = self.items
        if split is not None and self.splits:
            items = [i for i in items if i.split == split]
            if not items:
                raise DfrobustError(f"{self.root} has no images in split {split!r} (its splits: {', '.join(self.splits)})")
        if classes is not None:
            unknown = set(classes) - set(CLASS_NAMES)
            if unknown:
                raise DfrobustError(f"unknown class name(s) {sorted(unknown)}; use fake and/or real")
            keep = {CLASS_NAMES.index(c) for c in classes}
            items = [i for i in items if i.label in keep]
        if not items:
            raise DfrobustError(f"{self.root} has no {'/'.join(classes or CLASS_NAMES)} images in split {split!r}")
        if limit is not None and limit < len(items):
            chosen = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
            items = [items[i] for i in chosen]
        return items

    def fingerprint(self) -> str:
        """A hash of what was found: ids, labels, splits, groups and file sizes (the manifest hash for a dataset folder)."""
        if self.fingerprint_value is None:
            rows = [(i.rel, i.label, i.split, i.group, i.path.stat().st_size if i.path.is_file() else -1) for i in self.items]
            self.fingerprint_value = sha256_bytes(to_json(rows).encode())
        return self.fingerprint_value

    def summary(self) -> dict[str, Any]:
        """What was found, for JSON outputs: kind, layout, counts per split, class and group."""
        counts = Counter((i.split or "all", CLASS_NAMES[i.label]) for i in self.items)
        per_split: dict[str, dict[str, int]] = {}
        for (split, name), n in sorted(counts.items()):
            per_split.setdefault(split, {c: 0 for c in CLASS_NAMES})[name] = n
        return {"path": str(self.root), "kind": self.kind, "layout": self.description, "n_images": len(self.items),
                "counts": per_split, "groups": self.groups, "fingerprint": self.fingerprint()}  # fmt: skip


def _class_dirs(folder: Path) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in CLASS_FOLDERS:
            found.setdefault(CLASS_FOLDERS[child.name.lower()], []).append(child)
    return found


def _class_parents(root: Path) -> list[tuple[Path, dict[int, list[Path]]]]:
    """Folders (breadth first, at most :data:`MAX_DEPTH` below ``root``) that hold class folders."""
    parents, frontier = [], [root]
    for _ in range(MAX_DEPTH + 1):
        nxt = []
        for folder in frontier:
            classes = _class_dirs(folder)
            if classes:
                parents.append((folder, classes))  # class folders found: nothing below is a split or a group
                continue
            nxt += [c for c in sorted(folder.iterdir()) if c.is_dir() and not c.name.startswith(".")]
        frontier = nxt
    return parents


def _scan_folders(root: Path) -> Layout:
    parents = _class_parents(root)
    if not parents:
        loose = len([p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS])
        found = f"found {loose} images directly in {root} but no class folders" if loose else f"found no class folders in {root}"
        raise DfrobustError(f"{found}; {LAYOUT_HINT}")
    items: list[Item] = []
    with_split = set()
    names = set()
    for folder, classes in parents:
        parts = folder.relative_to(root).parts
        split = parts[0].lower() if parts and parts[0].lower() in SPLIT_NAMES else None
        rest = parts[1:] if split else parts
        group = rest[0] if rest else None
        with_split.add(split is not None)
        for label, dirs in classes.items():
            for d in dirs:
                names.add(d.name.lower())
                items += [Item(p, p.relative_to(root).as_posix(), label, split, group) for p in list_images(d)]
    if len(with_split) > 1:
        raise DfrobustError(f"{root} mixes class folders inside and outside train/val/test folders; use one layout: {LAYOUT_HINT}")
    items.sort(key=lambda i: i.rel)
    for label in (FAKE, REAL):
        if not any(i.label == label for i in items):
            raise DfrobustError(f"{root} has no {CLASS_NAMES[label]} images; every class needs images: {LAYOUT_HINT}")
    naming = "0_real/1_fake" if names & {"0_real", "1_fake"} else "real/fake"
    layout = Layout(root, "folders", naming, items)
    desc = naming + (f" under {'/'.join(layout.splits)}" if layout.splits else "")
    layout.description = desc + (f", {len(layout.groups)} group folder(s)" if layout.groups else "")
    return layout


def _label(value: Any, where: str) -> int:
    text = str(value).strip().lower()
    if text in CLASS_FOLDERS:
        return CLASS_FOLDERS[text]
    raise DfrobustError(
        f"{where}: label {value!r} is not real or fake; write the class name (a bare 0/1 is ambiguous: "
        "dfrobust's fake = 0 is CNNDetection's real = 0)"
    )


def _rows_of_list(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data.get("images") if isinstance(data, dict) else data
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise DfrobustError(
                    f'{path} must hold a list of {{"path", "label"[, "split"][, "group"]}} objects (or {{"images": [...]}})'
                )
            return rows
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= {c.strip() for c in reader.fieldnames}:
                raise DfrobustError(f"{path} needs a header row with path,label[,split][,group]; found {reader.fieldnames}")
            return [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DfrobustError(f"cannot read the image list {path}: {read_error(exc)}") from exc


def _scan_list(path: Path) -> Layout:
    root = path.parent
    items, seen = [], set()
    for n, row in enumerate(_rows_of_list(path), start=2 if path.suffix.lower() == ".csv" else 1):
        where = f"{path.name} {'line' if path.suffix.lower() == '.csv' else 'entry'} {n}"
        if not row.get("path"):
            raise DfrobustError(f"{where}: no path")
        file = Path(str(row["path"]))
        file = file if file.is_absolute() else root / file
        rel = os.path.relpath(file, root).replace(os.sep, "/")
        if rel.startswith("../") or os.path.isabs(rel):
            rel = f"outside/{sha256_bytes(str(file.resolve()).encode())[:10]}/{file.name}"  # an id that stays under an output folder
        if rel in seen:
            raise DfrobustError(f"{where}: {row['path']} is listed twice")
        seen.add(rel)
        split = (str(row.get("split") or "").strip().lower()) or None
        if split is not None and split not in SPLIT_NAMES:
            raise DfrobustError(f"{where}: split {row.get('split')!r} is not one of {', '.join(SPLIT_NAMES)}")
        group = str(row.get("group") or "").strip() or None
        items.append(Item(file, rel, _label(row.get("label"), where), split, group))
    if not items:
        raise DfrobustError(f"{path} lists no images; {LAYOUT_HINT}")
    for label in (FAKE, REAL):
        if not any(i.label == label for i in items):
            raise DfrobustError(f"{path} lists no {CLASS_NAMES[label]} images; every class needs images")
    items.sort(key=lambda i: i.rel)
    return Layout(root, "list", f"{path.suffix.lower()[1:]} list {path.name}", items)


def _scan_dataset(root: Path) -> Layout:
    manifest = read_manifest(root)
    items = [Item(root / r["path"], r["path"], int(r["label"]), r.get("split"), r.get("group")) for r in manifest["images"]]
    size = manifest.get("image_size")
    return Layout(root, "dfrobust", "dfrobust dataset folder", items, tuple(size) if size else None, manifest_hash(root))


def scan_layout(path: str | Path) -> Layout:
    """Find every image of a data argument: a dfrobust dataset folder, a folder of class folders, or a list file.

    Raises a one-line :class:`DfrobustError` for a missing path, an unknown layout, a class
    without images or a malformed list. No image is opened.

    >>> layout = scan_layout("CNNDetection/test")  # doctest: +SKIP
    >>> layout.groups                               # doctest: +SKIP
    ['biggan', 'crn', 'cyclegan', 'deepfake', 'gaugan', 'imle', 'progan', ...]
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in LIST_SUFFIXES:
            raise DfrobustError(f"{path} is a file but not a .csv or .json image list; {LAYOUT_HINT}")
        return _scan_list(path)
    if not path.is_dir():
        raise DfrobustError(f"data folder {path} does not exist; {LAYOUT_HINT}")
    if (path / MANIFEST).is_file():
        return _scan_dataset(path)
    return _scan_folders(path)


def read_resized(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Decode an image to ``uint8 H x W x 3`` and resize it to ``size`` (bilinear, antialiased by Pillow when
    shrinking; aspect ratio not kept). Raises Pillow's errors for an unreadable file."""
    img = read_rgb(path)
    if size is not None and img.shape[:2] != tuple(size):
        img = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
    return img


_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class LazyImageDataset(Dataset):
    """Images read from disk one at a time and resized to ``size``: constant memory for any number of images.

    ``dataset[i]`` is ``(uint8 3 x H x W tensor or None, label, i, error)``; an unreadable file
    gives ``None`` and the reason, which :func:`collate_skipping` turns into a skipped entry.
    """

    def __init__(self, items: Sequence[Item], size: tuple[int, int]) -> None:
        self.items = list(items)
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, int, str]:
        item = self.items[index]
        try:
            img = read_resized(item.path, self.size)
        except _READ_ERRORS as exc:
            return None, item.label, index, read_error(exc)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1), item.label, index, ""  # a writable copy


def collate_skipping(batch: list[tuple[torch.Tensor | None, int, int, str]]) -> dict[str, Any]:
    """Stack the readable images of a batch: ``{"x": uint8 N x 3 x H x W or None, "y", "index", "skipped": [(index, reason)]}``."""
    good = [b for b in batch if b[0] is not None]
    return {
        "x": torch.stack([b[0] for b in good]) if good else None,  # type: ignore[misc]
        "y": torch.tensor([b[1] for b in good], dtype=torch.long),
        "index": torch.tensor([b[2] for b in good], dtype=torch.long),
        "skipped": [(b[2], b[3]) for b in batch if b[0] is None],
    }


def make_loader(dataset: LazyImageDataset, batch_size: int = 64, workers: int = 2, device: str | torch.device = "cpu") -> DataLoader:
    """An ordered DataLoader over ``dataset`` with ``workers`` processes, pinned memory on CUDA."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        collate_fn=collate_skipping,
    )


def load_items(items: Sequence[Item], root: Path, size: tuple[int, int] | None = None) -> tuple[ImageSet, list[dict[str, str]]]:
    """Decode ``items`` into an in-memory :class:`ImageSet` (for stages that need every image at once).

    Images are resized to ``size``, or to the most common size when they differ. Returns the set
    (``records`` carry split and group) and the skipped files ``[{"path", "reason"}]``.
    """

    def read(item: Item) -> np.ndarray | str:
        try:
            return read_rgb(item.path)
        except _READ_ERRORS as exc:
            return read_error(exc)

    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(read, items))
    skipped = [{"path": i.rel, "reason": a} for i, a in zip(items, arrays) if isinstance(a, str)]
    kept = [(i, a) for i, a in zip(items, arrays) if not isinstance(a, str)]
    if not kept:
        raise DfrobustError(f"none of the {len(items)} images in {root} could be read (e.g. {skipped[0]['path']}: {skipped[0]['reason']})")
    if size is None:
        size = Counter(a.shape[:2] for _, a in kept).most_common(1)[0][0]
    h, w = int(size[0]), int(size[1])
    resized = [a if a.shape[:2] == (h, w) else np.asarray(Image.fromarray(a).resize((w, h), Image.BILINEAR)) for _, a in kept]
    x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([i.label for i, _ in kept], dtype=torch.long)
    return ImageSet(x, y, [i.rel for i, _ in kept], root, [i.record() for i, _ in kept]), skipped


def load_images(
    data: str | Path | torch.Tensor | tuple,
    split: str | None = "test",
    classes: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    *,
    y: Any = None,
    labels: str = DFROBUST_LABELS,
) -> tuple[ImageSet, str]:
    """Images of one split of any data argument, in memory, and the data's fingerprint.

    A dfrobust dataset folder is read as :func:`~dfrobust.data.dataset.load_split` reads it
    (fingerprint: its manifest hash); any other layout of :func:`scan_layout` in place (a
    layout without splits gives every image for any split). Unreadable files are skipped and
    logged. Images already in memory are taken too: a float tensor ``N x 3 x H x W`` in ``[0, 1]``
    with ``y=`` its labels, or a pair ``(x, y)``, labels in convention ``labels`` (``"fake=1"`` for
    DeepfakeBench's); they are stored as 8-bit pixels (fingerprint: their sha256; ``split``,
    ``classes``, ``limit`` and ``seed`` select as for a folder).

    >>> images, fingerprint = load_images("CNNDetection/test")            # doctest: +SKIP
    >>> images, _ = load_images((x, y), labels="fake=1")                   # doctest: +SKIP
    """
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        data, y = data
    if isinstance(data, torch.Tensor):
        images = tensor_image_set(data, y, labels)
        keep = list(range(len(images)))
        if classes is not None:
            unknown = set(classes) - set(CLASS_NAMES)
            if unknown:
                raise DfrobustError(f"unknown class name(s) {sorted(unknown)}; use fake and/or real")
            wanted = {CLASS_NAMES.index(c) for c in classes}
            keep = [i for i in keep if int(images.y[i]) in wanted]
            if not keep:
                raise DfrobustError(f"the images hold no {'/'.join(classes)} images")
        if limit is not None and limit < len(keep):
            chosen = np.sort(np.random.default_rng(seed).choice(len(keep), size=limit, replace=False))
            keep = [keep[i] for i in chosen]
        images = images.subset(keep) if len(keep) < len(images) else images
        return images, sha256_bytes(images.x.numpy().tobytes() + images.y.numpy().tobytes())
    if not isinstance(data, (str, Path)):
        raise DfrobustError(
            f"data must be a folder, an image list (.csv/.json), a float tensor N x 3 x H x W with y=, or (x, y); "
            f"got a {type(data).__name__}"
        )
    path = Path(data)
    if path.is_dir() and (path / MANIFEST).is_file():
        return load_dataset_split(path, split, classes, limit, seed), manifest_hash(path)
    layout = scan_layout(path)
    images, skipped = load_items(layout.select(split, classes, limit, seed), layout.root)
    if skipped:
        shown = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:5])
        logging.getLogger(__name__).warning("skipped %d unreadable image(s) in %s: %s", len(skipped), layout.root, shown)
    return images, layout.fingerprint()


def load_split(
    data_dir: str | Path,
    split: str | None = "test",
    classes: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """One split of a dfrobust dataset folder (as :func:`dfrobust.data.dataset.load_split`) or of any
    folder or image list read in place (:func:`load_images`): ``dfrobust.load_split``."""
    return load_images(data_dir, split, classes, limit, seed)[0]
