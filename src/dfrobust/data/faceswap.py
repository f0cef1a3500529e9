"""Face swaps on real photos: dlib's 68 landmarks + the same swap code as the synthetic faces.

Every usable photo becomes a real image (cropped around its face and resized) and the target
of one fake, whose inner face comes from another photo of the same split. Photos are split
between train and test as a whole (a photo's real, its fake and its face sources stay in one
split). Photos that cannot be read or show no face are skipped, counted and listed in the
manifest (``faceswap.skipped``). Needs the optional extra: ``pip install 'dfrobust[faceswap]'``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dfrobust.constants import FAKE, REAL
from dfrobust.data import photo
from dfrobust.data.images import list_images, read_error, read_rgb
from dfrobust.data.knobs import SwapKnobs
from dfrobust.data.landmarks import DlibLandmarker
from dfrobust.data.manifest import DatasetWriter, check_disjoint, check_out_dir
from dfrobust.data.provenance import finished_dataset, library_versions
from dfrobust.data.swap import as_tensor_images, sample_swap_params, swap_faces
from dfrobust.data.threads import single_threaded_torch
from dfrobust.errors import DfrobustError
from dfrobust.utils.runtime import progress

#: Crop side / jaw width: frames a photo's face as the synthetic faces are framed.
CROP_PER_JAW_WIDTH = 2.05
CHUNK = 16


def face_crop(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop a square around the face (shifted and shrunk to stay inside the photo), resize it to ``size``.

    Returns the ``uint8 size x size x 3`` crop and the landmarks in its pixel coordinates.
    """
    h, w = image.shape[:2]
    centre = (landmarks[0] + landmarks[16]) / 2 + 0.5  # continuous coordinates (pixel centres at +0.5)
    side = min(float(np.linalg.norm(landmarks[16] - landmarks[0])) * CROP_PER_JAW_WIDTH, w, h)
    x0 = float(np.clip(centre[0] - side / 2, 0, w - side))
    y0 = float(np.clip(centre[1] - side / 2, 0, h - side))
    crop = Image.fromarray(image).resize((size, size), Image.LANCZOS, box=(x0, y0, x0 + side, y0 + side))
    k = size / side
    return np.asarray(crop), ((landmarks + 0.5 - np.array([x0, y0])) * k - 0.5).astype(np.float32)


def _find_faces(paths: list[Path], root: Path, size: int) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Read every photo, find its landmarks and crop it; returns (faces, skipped)."""
    find = DlibLandmarker()
    faces, skipped = [], []
    for path in progress(paths, desc="landmarks", unit="photo"):
        rel = path.relative_to(root).as_posix()
        try:
            image = read_rgb(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            skipped.append({"path": rel, "reason": read_error(exc)})
            continue
        points = find(image)
        if points is None:
            skipped.append({"path": rel, "reason": "no face found"})
            continue
        crop, lm = face_crop(image, points, size)
        faces.append({"rel": rel, "image": crop, "landmarks": lm})
    return faces, skipped


def make_faceswap_dataset(
    real_dir: str | Path,
    out_dir: str | Path,
    size: int = 128,
    seed: int = 0,
    test_fraction: float = 0.25,
    overwrite: bool = False,
    **knobs: Any,
) -> Path:
    """Make a real/fake dataset folder from a folder of real face photos; returns its path.

    Args:
        real_dir: folder of photos (searched recursively; JPEG, PNG, WebP, BMP).
        out_dir: the dataset folder to create.
        size: output side in pixels.
        seed: seed of the split, the source/target pairs and the swap parameters.
        test_fraction: fraction of the photos whose real and fake go to test.
        overwrite: replace an existing folder made with other settings.
        **knobs: :class:`~dfrobust.data.knobs.SwapKnobs` fields (``feather``, ``resample``, ``color_mismatch``, ``artifacts``).

    >>> make_faceswap_dataset("photos/", "data/swapped", size=128)  # doctest: +SKIP
    """
    real_dir = Path(real_dir)
    if not real_dir.is_dir():
        raise DfrobustError(f"photo folder {real_dir} does not exist; give --real a folder of real face photos")
    check_disjoint(real_dir, out_dir)
    paths = list_images(real_dir)
    if not paths:
        raise DfrobustError(f"{real_dir} holds no images (.jpg .jpeg .png .webp .bmp); give --real a folder of face photos")
    kn = SwapKnobs(**knobs)
    kn.validate()
    if not 0 < test_fraction < 1:
        raise DfrobustError(f"--test-fraction must lie strictly between 0 and 1, got {test_fraction}")
    args = {"real": str(real_dir.resolve()), "size": size, "seed": seed, "test_fraction": test_fraction, **dataclasses.asdict(kn)}
    created_by = {
        "command": f"dfrobust data faceswap --real {real_dir} --size {size} --seed {seed} --test-fraction {test_fraction} "
                   f"--feather {kn.feather} --resample {kn.resample} --color-mismatch {kn.color_mismatch} --artifacts {kn.artifacts}",
        "generator": "faceswap", "landmarks": "dlib 68-point shape predictor", "args": args, "versions": library_versions(),
    }  # fmt: skip
    done = finished_dataset(out_dir, created_by)
    if done is not None:
        return done
    check_out_dir(out_dir, overwrite)

    faces, skipped = _find_faces(paths, real_dir, size)
    if len(faces) < 4:
        raise DfrobustError(f"only {len(faces)} of {len(paths)} photos in {real_dir} show a face; at least 4 are needed")
    rng = np.random.default_rng(seed)
    n = len(faces)
    order = rng.permutation(n)
    n_test = min(n - 2, max(2, round(n * test_fraction)))
    split = np.empty(n, dtype=object)
    split[order[:n_test]], split[order[n_test:]] = "test", "train"
    source = np.zeros(n, np.int64)
    for pool in (order[:n_test], order[n_test:]):  # a different photo of the same split as each face source
        source[pool] = pool[(np.arange(len(pool)) + rng.integers(1, len(pool), len(pool))) % len(pool)]
    swap = sample_swap_params(rng, n, kn)
    finish = photo.sample_finish(rng, 2 * n)  # reals at [:n], fakes at [n:]

    images = np.stack([f["image"] for f in faces])
    lms = torch.from_numpy(np.stack([f["landmarks"] for f in faces]))
    writer = DatasetWriter(out_dir, created_by=created_by, overwrite=overwrite)
    try:
        with single_threaded_torch(), progress(total=n, desc="faceswap", unit="photo") as bar:
            for start in range(0, n, CHUNK):
                idx = np.arange(start, min(n, start + CHUNK))
                x = as_tensor_images(images[idx])
                fakes, _ = swap_faces(
                    x, lms[idx], as_tensor_images(images[source[idx]]), lms[source[idx]],
                    **{k: torch.from_numpy(v[idx]) for k, v in swap.items()},
                )  # fmt: skip
                fin = {k: np.concatenate([v[idx], v[n + idx]]) for k, v in finish.items()}
                out = photo.finish(torch.cat([x, fakes]).permute(0, 2, 3, 1).numpy(), fin)
                for j, i in enumerate(idx):
                    rel = faces[i]["rel"]
                    writer.add(out[j], REAL, split[i], photo=rel, jpeg_quality=int(fin["jpeg"][j]))
                    writer.add(out[len(idx) + j], FAKE, split[i], photo=rel, source_photo=faces[source[i]]["rel"],
                               swap={k: round(float(v[i]), 4) for k, v in swap.items()},
                               jpeg_quality=int(fin["jpeg"][len(idx) + j]))  # fmt: skip
                bar.update(len(idx))
        info = {"n_photos": len(paths), "n_used": n, "n_skipped": len(skipped), "skipped": skipped}
        return writer.close(faceswap=info)
    except BaseException:
        writer.abort()
        raise
