"""Loading a dataset folder into memory as batched tensors."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfrobust.constants import CLASS_NAMES
from dfrobust.data.manifest import file_stamp, hash_mismatch, read_manifest, read_verify_cache, write_verify_cache
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import sha256_bytes


@dataclass
class ImageSet:
    """Images of one split held as ``uint8`` (compact), handed out as float ``[0, 1]`` batches.

    Attributes:
        x: ``uint8`` tensor ``N x 3 x H x W``.
        y: ``int64`` labels ``N`` (fake = 0, real = 1).
        paths: relative paths in the dataset folder (the image ids used in result tables).
        root: the dataset folder.
    """

    x: torch.Tensor
    y: torch.Tensor
    paths: list[str]
    root: Path | None = None
    records: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return int(self.x.shape[-2]), int(self.x.shape[-1])

    def images(self, idx: Sequence[int] | slice | torch.Tensor | None = None) -> torch.Tensor:
        """Float images ``[0, 1]`` for the given indices (all when ``None``)."""
        x = self.x if idx is None else self.x[idx]
        return x.float() / 255.0

    def subset(self, idx: Sequence[int] | torch.Tensor) -> ImageSet:
        """A new set with the chosen items, in the given order."""
        idx_list = [int(i) for i in idx]
        t = torch.as_tensor(idx_list, dtype=torch.long)
        recs = [self.records[i] for i in idx_list] if self.records else []
        return ImageSet(self.x[t], self.y[t], [self.paths[i] for i in idx_list], self.root, recs)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        """Yield ``(float images, labels, paths)`` in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            sl = slice(start, start + batch_size)
            yield self.images(sl), self.y[sl], self.paths[sl]


def _read_uint8(path: Path, data: bytes | None = None) -> np.ndarray:
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DfrobustError(f"cannot read {path}: {exc}; the dataset folder is damaged, recreate it") from exc


def _read_checked(root: Path, record: dict, cache: dict[str, list], passed: dict[str, list]) -> np.ndarray:
    """Decode one image after checking its bytes against the manifest's sha256 (skipped when the
    size/mtime cache says this very file passed before)."""
    path = root / record["path"]
    try:
        stamp = file_stamp(path.stat(), record["sha256"])
        data = path.read_bytes()
    except OSError as exc:
        raise DfrobustError(f"cannot read {path}: {exc.strerror or exc}; the dataset folder is damaged, recreate it") from exc
    if cache.get(record["path"]) != stamp:
        if sha256_bytes(data) != record["sha256"]:
            raise DfrobustError(hash_mismatch(root, record["path"]))
        passed[record["path"]] = stamp
    return _read_uint8(path, data)


def load_split(
    data_dir: str | Path,
    split: str | None = "test",
    classes: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """Load one split (``train``, ``test``, or ``None`` for all) of a dataset folder.

    Args:
        data_dir: a dataset folder (``manifest.json`` + ``real/`` + ``fake/``).
        split: which split; ``None`` loads every image.
        classes: keep only these class names (``["fake"]`` for the paper's attacks).
        limit: keep a seeded random subset of at most this many images (order preserved).
        seed: seed of that subset.
    """
    root = Path(data_dir)
    manifest = read_manifest(root)
    recs = [r for r in manifest["images"] if split is None or r["split"] == split]
    if classes is not None:
        unknown = set(classes) - set(CLASS_NAMES)
        if unknown:
            raise DfrobustError(f"unknown class name(s) {sorted(unknown)}; use fake and/or real")
        keep = {CLASS_NAMES.index(c) for c in classes}
        recs = [r for r in recs if r["label"] in keep]
    if not recs:
        raise DfrobustError(f"{root} has no images in split {split!r} for classes {list(classes or CLASS_NAMES)}")
    if limit is not None and limit < len(recs):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(recs), size=limit, replace=False))
        recs = [recs[i] for i in chosen]
    cache, passed = read_verify_cache(root), {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(lambda r: _read_checked(root, r, cache, passed), recs))
    if passed:
        write_verify_cache(root, {**cache, **passed})
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DfrobustError(f"{root} mixes image sizes {sorted(shapes)}; re-import it with `dfrobust data import --size N`")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([int(r["label"]) for r in recs], dtype=torch.long)
    return ImageSet(x, y, [r["path"] for r in recs], root, recs)
