"""Face crops as deployed detectors see them: DeepfakeBench's aligned crop, from dlib's offline landmarks.

DeepfakeBench (its ``preprocessing/preprocess.py``) detects a face with dlib, takes five of its
landmarks (points 37 and 44 on the eyes, 30 on the nose tip, 49 and 55 by the mouth corners),
fits a similarity transform onto the five-point template of a 112-px aligned face (x shifted by
8 px, scaled to the output size), widened by a margin ``scale = 1.3``, and warps the photo to a
256 x 256 crop. :func:`align_crop` does the same from 68 landmarks; :func:`crop_folder` runs it
over a folder with dlib's detector and predictor (the ``faceswap`` extra) and lists the images
where no face was found.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dfrobust.errors import DfrobustError

#: DeepfakeBench's output side and margin (``resolution: 256``, ``scale = 1.3``).
DFB_SIZE = 256
DFB_SCALE = 1.3
#: The 68-point indices DeepfakeBench aligns on: eye, eye, nose tip, mouth, mouth.
KEYPOINTS = (37, 44, 30, 49, 55)
#: Five-point template of a 112 x 112 aligned face (the ArcFace layout), before DeepfakeBench's 8-px x shift.
TEMPLATE_112 = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]])
MARKER = "crops.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

Landmarker = Callable[[np.ndarray], "np.ndarray | None"]


def template_points(size: int = DFB_SIZE, scale: float = DFB_SCALE) -> np.ndarray:
    """Where the five keypoints land in a ``size`` x ``size`` crop with margin ``scale`` (5 x 2, x then y)."""
    dst = TEMPLATE_112.copy()
    dst[:, 0] += 8.0  # the template is for 96 x 112; DeepfakeBench centres it in 112 x 112
    dst *= size / 112.0
    margin = size * (scale - 1) / 2.0
    return (dst + margin) * size / (size + 2 * margin)


def align_crop(image: np.ndarray, landmarks: np.ndarray, size: int = DFB_SIZE, scale: float = DFB_SCALE) -> np.ndarray:
    """The aligned face crop of a ``uint8 H x W x 3`` image given its 68 landmarks (``x, y`` pixels): ``uint8 size x size x 3``."""
    from skimage.transform import SimilarityTransform, warp

    if landmarks.shape != (68, 2):
        raise DfrobustError(f"align_crop needs 68 x 2 landmarks, got {landmarks.shape}")
    src, dst = landmarks[list(KEYPOINTS)].astype(np.float64), template_points(size, scale)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tform)
    else:
        tform = SimilarityTransform()
        ok = tform.estimate(src, dst)
    if not ok:
        raise DfrobustError("the face's keypoints are degenerate (no similarity transform fits them)")
    out = warp(image, tform.inverse, output_shape=(size, size), order=1, mode="constant", cval=0.0, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _images(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def crop_folder(
    src: str | Path,
    out: str | Path,
    size: int = DFB_SIZE,
    scale: float = DFB_SCALE,
    landmarker: Landmarker | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Crop the face of every image under ``src`` into ``out`` (same relative paths, as PNG).

    Writes ``out/crops.json`` (settings, counts, the images without a face and the unreadable ones)
    and ``out/no_face.txt`` (one relative path a line). ``out`` must be new, empty or an earlier
    crop folder (its ``crops.json``): nothing else is overwritten. Returns the ``crops.json`` record.
    """
    from PIL import Image, UnidentifiedImageError

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DfrobustError(f"{src} is not a folder of images")
    if size < 8 or not (1.0 <= scale <= 3.0):
        raise DfrobustError(f"--size must be at least 8 and --scale within [1, 3], got {size} and {scale}")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DfrobustError(f"{out} is not empty and was not made by `dfrobust data crop`; choose a new folder")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise DfrobustError(f"--out {out} lies inside {src}; choose a folder outside it")
    log = log or logging.getLogger(__name__).info  # progress lines, silenced by -q
    images = _images(src)
    if not images:
        raise DfrobustError(f"{src} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if landmarker is None:
        from dfrobust.data.landmarks import DlibLandmarker

        landmarker = DlibLandmarker()
    out.mkdir(parents=True, exist_ok=True)
    missed, unreadable, written = [], [], 0
    for i, path in enumerate(images):
        rel = path.relative_to(src)
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError):
            unreadable.append(str(rel))
            continue
        points = landmarker(rgb)
        if points is None:
            missed.append(str(rel))
            continue
        target = out / rel.with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(align_crop(rgb, np.asarray(points, dtype=np.float64), size, scale)).save(target)
        written += 1
        if (i + 1) % 50 == 0:
            log(f"cropped {i + 1}/{len(images)}")
    record = {"format": "dfrobust-crops-1", "source": str(src), "size": size, "scale": scale, "keypoints": list(KEYPOINTS),
              "n_images": len(images), "n_cropped": written, "no_face": missed, "unreadable": unreadable}  # fmt: skip
    (out / "no_face.txt").write_text("".join(f"{m}\n" for m in missed))
    (out / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return record
