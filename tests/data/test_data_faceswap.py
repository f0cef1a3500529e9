"""Face swap on real photos (dlib landmarks); skipped without the photos or the `faceswap` extra."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FFHQ_DIR
from PIL import Image

from dfrobust.constants import FAKE, REAL
from dfrobust.data.dataset import load_split
from dfrobust.data.images import list_images, read_rgb
from dfrobust.data.landmarks import faceswap_extra_available
from dfrobust.data.manifest import read_manifest
from dfrobust.errors import DfrobustError

needs_photos = pytest.mark.skipif(
    not FFHQ_DIR.is_dir() or not faceswap_extra_available(),
    reason="needs ../shared/data/ffhq-real-200 and the faceswap extra (pip install 'dfrobust[faceswap]')",
)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to 8 real photos (not copies), plus a photo without a face and a broken file."""
    folder = tmp_path_factory.mktemp("photos")
    for path in list_images(FFHQ_DIR)[:8]:
        (folder / path.name).symlink_to(path)
    ramp = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    Image.fromarray(ramp).save(folder / "zz_no_face.png")
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    return folder


@needs_photos
def test_dlib_landmarks_follow_the_68_point_layout() -> None:
    from dfrobust.data.landmarks import DlibLandmarker

    image = read_rgb(list_images(FFHQ_DIR)[0])
    lm = DlibLandmarker()(image)
    assert lm is not None and lm.shape == (68, 2)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    assert eye_l[0] < eye_r[0] and lm[33, 1] > eye_l[1] and lm[8, 1] > lm[57, 1] > lm[33, 1]
    assert DlibLandmarker()(np.full((64, 64, 3), 128, np.uint8)) is None


@needs_photos
def test_faceswap_dataset_on_photos(photo_dir: Path, tmp_path: Path) -> None:
    from dfrobust.data.faceswap import make_faceswap_dataset

    out = make_faceswap_dataset(photo_dir, tmp_path / "swap", size=64, seed=0)
    m = read_manifest(out)
    info = m["faceswap"]
    assert info["n_photos"] == 10 and info["n_used"] == 8 and info["n_skipped"] == 2
    reasons = {s["path"]: s["reason"] for s in info["skipped"]}
    assert reasons["zz_no_face.png"] == "no face found" and "zz_broken.jpg" in reasons
    assert m["counts"] == {"train": {"fake": 6, "real": 6}, "test": {"fake": 2, "real": 2}}
    assert m["image_size"] == [64, 64]
    recs = m["images"]
    for fake in (r for r in recs if r["label"] == FAKE):
        real = next(r for r in recs if r["label"] == REAL and r["photo"] == fake["photo"])
        src = next(r for r in recs if r["label"] == REAL and r["photo"] == fake["source_photo"])
        assert fake["source_photo"] != fake["photo"] and fake["split"] == real["split"] == src["split"]
    # the fake differs from its target photo in the face, much less in the corners
    data = load_split(out, None)
    by_path = dict(zip(data.paths, data.images()))
    diffs = []
    for fake in (r for r in recs if r["label"] == FAKE):
        real = next(r for r in recs if r["label"] == REAL and r["photo"] == fake["photo"])
        d = (by_path[fake["path"]] - by_path[real["path"]]).abs().mean(0)
        diffs.append((d[24:40, 24:40].mean().item(), d[:8, :8].mean().item()))
    centre, corner = np.mean(diffs, 0)
    assert centre > 3 * corner, (centre, corner)


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dfrobust.data.faceswap import make_faceswap_dataset

    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "photos" / "a.png")
    with pytest.raises(DfrobustError, match=r"pip install 'dfrobust\[faceswap\]'"):
        make_faceswap_dataset(tmp_path / "photos", tmp_path / "out", size=32)
    assert not (tmp_path / "out").exists()


def test_photo_folder_errors(tmp_path: Path) -> None:
    from dfrobust.data.faceswap import make_faceswap_dataset

    with pytest.raises(DfrobustError, match="does not exist"):
        make_faceswap_dataset(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DfrobustError, match="holds no images"):
        make_faceswap_dataset(tmp_path / "empty", tmp_path / "out")
