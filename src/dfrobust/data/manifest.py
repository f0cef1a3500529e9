"""The dataset folder: ``real/`` and ``fake/`` PNGs plus ``manifest.json``.

This is the unit every later stage reads. One writer (:class:`DatasetWriter`) serves the
synthetic generator, the face-swap path and the folder importer, so every dataset has the
same layout::

    DIR/
      manifest.json     {"format": ..., "created_by": {...}, "image_size": [H, W],
                         "classes": {"fake": 0, "real": 1}, "counts": {...},
                         "images": [{"path": "real/00001.png", "label": 1, "split": "train",
                                     "sha256": "...", ...extra...}, ...]}
      real/00001.png ...
      fake/00001.png ...

The manifest holds no timestamps, so the same generator, parameters and seed give
byte-identical folders.

Safety: a writer replaces only a folder it can prove dfrobust made (a dfrobust manifest that
lists every file in it), builds the new one in ``DIR.partial`` (marked with
``.dfrobust-partial`` so that a user's folder of that name is never removed), and readers
check every record (paths inside the folder, known splits, a sha256 per image) and every
image's bytes against its sha256 (cached by size and mtime in ``.dfrobust-verified.json``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch

from dfrobust.constants import CLASS_NAMES, FAKE, REAL
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import read_json, save_png, sha256_bytes, sha256_file, to_json, write_json

MANIFEST = "manifest.json"
FORMAT = "dfrobust-dataset/1"
SPLITS = ("train", "test")
#: Marker file of a partial dataset folder (``DIR.partial``) that a writer made.
PARTIAL_MARKER = ".dfrobust-partial"
#: Size/mtime cache of image files whose sha256 was checked (inside the dataset folder).
VERIFY_CACHE = ".dfrobust-verified.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_disjoint(src: str | Path, out: str | Path, option: str = "--out") -> None:
    """One-line error when ``out`` is ``src``, lies inside it or contains it (a command never writes over its input)."""
    s, o = Path(src).resolve(), Path(out).resolve()
    if s == o or o.is_relative_to(s) or s.is_relative_to(o):
        raise DfrobustError(f"{option} {out} overlaps the source folder {src}; give an {option} outside it (and not above it)")


def _listed_files(manifest: Any) -> set[str] | None:
    """Files a dfrobust manifest accounts for, or ``None`` when it is not a dfrobust manifest."""
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT and isinstance(manifest.get("created_by"), dict)
            and isinstance(manifest.get("images"), list)):  # fmt: skip
        return None
    return {MANIFEST, VERIFY_CACHE} | {r["path"] for r in manifest["images"] if isinstance(r, dict) and isinstance(r.get("path"), str)}


def check_replaceable(folder: str | Path) -> None:
    """One-line error unless ``folder`` is a dfrobust dataset holding only files its manifest lists.

    This is what ``--overwrite`` may delete: nothing a user put there, and no folder that
    dfrobust did not make.
    """
    folder = Path(folder)
    try:
        listed = _listed_files(read_json(folder / MANIFEST))
    except (OSError, ValueError):
        listed = None
    if listed is None:
        raise DfrobustError(
            f"{folder} is not a dataset folder made by dfrobust (no dfrobust {MANIFEST}); --overwrite replaces only "
            "those: choose another --out"
        )
    foreign = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        foreign += [(base / d).relative_to(folder).as_posix() for d in dirnames if (base / d).is_symlink()]
        foreign += [rel for f in filenames if (rel := (base / f).relative_to(folder).as_posix()) not in listed]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise DfrobustError(
            f"{folder} holds files dfrobust did not make ({sorted(foreign)[0]}{more}); move them out or choose another --out"
        )


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Check, before any work, that a dataset may be written to ``out_dir``; returns its partial folder.

    ``out_dir`` must be absent, empty, or (with ``overwrite``) a dataset that dfrobust made
    (:func:`check_replaceable`); ``out_dir.partial`` must be absent or carry the writer's marker.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DfrobustError(f"--out {out_dir} is a file; give a folder path")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise DfrobustError(f"{out_dir} already exists and is not empty; choose another --out or delete it")
        check_replaceable(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    if tmp_dir.exists() and not (tmp_dir / PARTIAL_MARKER).is_file():
        raise DfrobustError(f"{tmp_dir} exists and was not made by dfrobust (no {PARTIAL_MARKER} in it); move it or choose another --out")
    return tmp_dir


class DatasetWriter:
    """Write a dataset folder image by image; the folder appears only when :meth:`close` runs.

    Images go to ``<out>.partial/`` first and the folder is renamed to ``out`` at the end, so an
    interrupted run never leaves a folder that looks finished. ``out`` is replaced only when
    ``overwrite`` is set and it is a dataset dfrobust made (see :func:`check_out_dir`).

    >>> with DatasetWriter("data/synth", created_by={"command": "data synth", "seed": 0}) as w:  # doctest: +SKIP
    ...     w.add(image_uint8_hwc, label=1, split="train", identity=3)
    """

    def __init__(self, out_dir: str | Path, created_by: dict[str, Any], overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.tmp_dir = check_out_dir(self.out_dir, overwrite)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir(parents=True)
        (self.tmp_dir / PARTIAL_MARKER).write_text(to_json({"created_by": created_by}), encoding="utf-8")
        for name in CLASS_NAMES:
            (self.tmp_dir / name).mkdir()
        self.created_by = dict(created_by)
        self.records: list[dict[str, Any]] = []
        self._count = Counter()
        self.image_size: tuple[int, int] | None = None

    def add(self, image: np.ndarray | torch.Tensor, label: int, split: str, **extra: Any) -> dict[str, Any]:
        """Store one image (``uint8 H x W x 3`` array or float ``3 x H x W`` tensor) and return its record."""
        if label not in (FAKE, REAL):
            raise ValueError(f"label must be {FAKE} (fake) or {REAL} (real), got {label!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        hw = tuple(image.shape[:2]) if isinstance(image, np.ndarray) else tuple(image.shape[-2:])
        if self.image_size is None:
            self.image_size = hw  # type: ignore[assignment]
        elif hw != self.image_size:
            raise ValueError(f"all images of a dataset have one size: got {hw}, expected {self.image_size}")
        cls = CLASS_NAMES[label]
        self._count[cls] += 1
        rel = f"{cls}/{self._count[cls]:05d}.png"
        save_png(self.tmp_dir / rel, image)
        record = {"path": rel, "label": int(label), "split": split, "sha256": sha256_file(self.tmp_dir / rel)}
        record.update(extra)
        self.records.append(record)
        return record

    def close(self, **info: Any) -> Path:
        """Write ``manifest.json`` (with any extra top-level ``info``) and move the folder into place."""
        if not self.records:
            raise DfrobustError("no images were written; nothing to save")
        manifest = {
            "format": FORMAT,
            "created_by": self.created_by,
            "image_size": list(self.image_size or ()),
            "classes": {name: i for i, name in enumerate(CLASS_NAMES)},
            "counts": count_records(self.records),
            "images": self.records,
        }
        manifest.update(info)
        write_json(self.tmp_dir / MANIFEST, manifest)
        if self.out_dir.is_dir() and any(self.out_dir.iterdir()):
            check_replaceable(self.out_dir)  # again: it may have changed while the images were made
            shutil.rmtree(self.out_dir)
        elif self.out_dir.is_dir():
            self.out_dir.rmdir()
        (self.tmp_dir / PARTIAL_MARKER).unlink()
        self.tmp_dir.rename(self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        """Remove the partial folder (only if it is this writer's: it carries the marker)."""
        if (self.tmp_dir / PARTIAL_MARKER).is_file():
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def count_records(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Images per split and class: ``{"train": {"fake": n, "real": m}, "test": {...}}``."""
    counts: dict[str, dict[str, int]] = {s: {c: 0 for c in CLASS_NAMES} for s in SPLITS}
    for r in records:
        counts[r["split"]][CLASS_NAMES[r["label"]]] += 1
    return counts


def stratified_split(labels: Sequence[int], test_fraction: float, seed: int) -> list[str]:
    """Assign ``train``/``test`` per item so that each class keeps ``test_fraction`` in test.

    A class of two or more items keeps at least one item in each split. Seeded and
    deterministic: the same labels, fraction and seed give the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DfrobustError(f"--test-fraction must lie strictly between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    splits = np.array(["train"] * len(labels_arr), dtype=object)
    for cls in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == cls)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        splits[idx[:n_test]] = "test"
    return splits.tolist()


def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    """Read and check a dataset folder's manifest; a one-line error says what to do if it is not one."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DfrobustError(f"dataset folder {data_dir} does not exist; make one with `dfrobust data synth --out {data_dir}`")
    path = data_dir / MANIFEST
    if not path.is_file():
        raise DfrobustError(
            f"{data_dir} has no {MANIFEST}; it is not a dataset folder. Make one with `dfrobust data synth` "
            f"or `dfrobust data import {data_dir} --out DIR`"
        )
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("images"), list):
        raise DfrobustError(f"{path} is not a dfrobust manifest (no 'images' list)")
    for i, record in enumerate(manifest["images"]):
        problem = record_problem(record)
        if problem:
            raise DfrobustError(f"{path}: image record {i} {problem}; fix the manifest or recreate the dataset")
    return manifest


def _inside(rel: str) -> bool:
    """Whether a manifest path stays inside the dataset folder (relative, no ``..``)."""
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    return bool(rel) and not posix.is_absolute() and not win.is_absolute() and not win.drive and ".." not in win.parts


def record_problem(record: Any) -> str | None:
    """What is wrong with one manifest record (``None`` when it is well formed)."""
    if not isinstance(record, dict):
        return "is not an object"
    rel = record.get("path")
    if not isinstance(rel, str) or not _inside(rel):
        return f"has path {rel!r} outside the dataset folder (paths are relative, like real/00001.png)"
    if record.get("label") not in (FAKE, REAL) or isinstance(record.get("label"), bool):
        return f"({rel}) has label {record.get('label')!r}; labels are {FAKE} (fake) and {REAL} (real)"
    if record.get("split") not in SPLITS:
        return f"({rel}) has split {record.get('split')!r}; splits are {' and '.join(SPLITS)}"
    sha = record.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        return f"({rel}) has no valid sha256 (64 lowercase hex digits)"
    return None


def read_verify_cache(data_dir: str | Path) -> dict[str, list]:
    """``{path: [size, mtime_ns, sha256]}`` of image files already checked against the manifest."""
    try:
        cache = read_json(Path(data_dir) / VERIFY_CACHE)
    except (OSError, ValueError):
        return {}
    files = cache.get("files") if isinstance(cache, dict) else None
    return files if isinstance(files, dict) else {}


def write_verify_cache(data_dir: str | Path, files: dict[str, list]) -> None:
    """Store the cache; a read-only dataset folder simply gets checked in full next time."""
    try:
        write_json(Path(data_dir) / VERIFY_CACHE, {"format": "dfrobust-verified/1", "files": files})
    except OSError:
        pass


def file_stamp(stat: os.stat_result, sha256: str) -> list:
    """The cache entry of a checked file: size, mtime and the sha256 it was checked against."""
    return [int(stat.st_size), int(stat.st_mtime_ns), sha256]


def hash_mismatch(data_dir: str | Path, rel: str) -> str:
    """The one-line error of an image whose bytes do not match the manifest's sha256."""
    return (f"{Path(data_dir) / rel}: its sha256 differs from {Path(data_dir) / MANIFEST} (the file was changed or "
            f"damaged); recreate the dataset, or list every such file with `dfrobust data verify {data_dir}`")  # fmt: skip


def verify_dataset(data_dir: str | Path, full: bool = True) -> dict[str, Any]:
    """Check every image of a dataset folder against the manifest's sha256.

    ``full`` hashes every file; otherwise files whose size and mtime match the cache of an
    earlier check are skipped. Returns ``{"n": images, "hashed": files hashed, "problems":
    [{"path", "reason"}]}`` and updates the cache with the files that passed.
    """
    root = Path(data_dir)
    records = read_manifest(root)["images"]
    cache = {} if full else read_verify_cache(root)
    passed: dict[str, list] = {}
    problems, hashed = [], 0
    for r in records:
        path = root / r["path"]
        try:
            st = path.stat()
        except OSError:
            problems.append({"path": r["path"], "reason": "missing"})
            continue
        stamp = file_stamp(st, r["sha256"])
        if cache.get(r["path"]) != stamp:
            hashed += 1
            if not path.is_file() or sha256_file(path) != r["sha256"]:
                problems.append({"path": r["path"], "reason": "sha256 differs from the manifest"})
                continue
        passed[r["path"]] = stamp
    write_verify_cache(root, passed)
    return {"n": len(records), "hashed": hashed, "problems": problems}


def manifest_hash(data_dir: str | Path) -> str:
    """A hash that identifies a dataset's content: SHA-256 over its image records (paths, labels, splits, hashes)."""
    manifest = read_manifest(data_dir)
    keyed = [{k: r[k] for k in ("path", "label", "split", "sha256")} for r in manifest["images"]]
    return sha256_bytes(to_json(keyed).encode())
