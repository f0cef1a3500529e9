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
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfrobust.constants import CLASS_NAMES, FAKE, REAL
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import read_json, save_png, sha256_bytes, sha256_file, to_json, write_json

MANIFEST = "manifest.json"
FORMAT = "dfrobust-dataset/1"
SPLITS = ("train", "test")


class DatasetWriter:
    """Write a dataset folder image by image; the folder appears only when :meth:`close` runs.

    Images go to ``<out>.partial/`` first and the folder is renamed to ``out`` at the end, so an
    interrupted run never leaves a folder that looks finished.

    >>> with DatasetWriter("data/synth", created_by={"command": "data synth", "seed": 0}) as w:  # doctest: +SKIP
    ...     w.add(image_uint8_hwc, label=1, split="train", identity=3)
    """

    def __init__(self, out_dir: str | Path, created_by: dict[str, Any], overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and any(self.out_dir.iterdir()) and not overwrite:
            raise DfrobustError(f"{self.out_dir} already exists and is not empty; choose another --out or delete it")
        self.tmp_dir = self.out_dir.with_name(self.out_dir.name + ".partial")
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        for name in CLASS_NAMES:
            (self.tmp_dir / name).mkdir(parents=True)
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
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        self.tmp_dir.rename(self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        """Remove the partial folder."""
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
    if not isinstance(manifest, dict) or "images" not in manifest:
        raise DfrobustError(f"{path} is not a dfrobust manifest (no 'images' list)")
    return manifest


def manifest_hash(data_dir: str | Path) -> str:
    """A hash that identifies a dataset's content: SHA-256 over its image records (paths, labels, splits, hashes)."""
    manifest = read_manifest(data_dir)
    keyed = [{k: r[k] for k in ("path", "label", "split", "sha256")} for r in manifest["images"]]
    return sha256_bytes(to_json(keyed).encode())
