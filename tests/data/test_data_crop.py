"""`dfrobust data crop`: DeepfakeBench's aligned face crop, on rendered faces (known landmarks) and on real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FFHQ_DIR
from dfrobust.cli import main
from dfrobust.data.crop import KEYPOINTS, align_crop, crop_folder, template_points
from dfrobust.data.faces import render_faces, sample_identities, sample_scenes
from dfrobust.data.landmarks import faceswap_extra_available
from dfrobust.errors import DfrobustError

FFHQ = FFHQ_DIR  # ../shared beside the checkout, as the other photo tests


def _rendered(n: int = 2, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images, points = render_faces(sample_identities(rng, n), sample_scenes(rng, n), size, rng)
    return (images * 255).round().astype(np.uint8), points


def test_template_matches_deepfakebench_s_arithmetic() -> None:
    # 256 px, scale 1.3: x = (t + 8) * 256/112, shifted by the 38.4-px margin, shrunk by 256/332.8
    t = template_points(256, 1.3)
    assert t[0, 0] == pytest.approx(((30.2946 + 8) * 256 / 112 + 38.4) * 256 / 332.8, abs=1e-4)
    assert t[2, 1] == pytest.approx((71.7366 * 256 / 112 + 38.4) * 256 / 332.8, abs=1e-4)


def test_rendered_faces_land_their_keypoints_on_the_template() -> None:
    """Crop a face whose landmarks are known; a dot drawn at each keypoint must appear near the template's point
    (and a misaligned crop, e.g. with x and y swapped, puts it tens of pixels away)."""
    images, points = _rendered()
    size = 64
    for img, pts in zip(images, points):
        for k, point in zip(KEYPOINTS, template_points(size, 1.3)):
            marked = img.copy()
            x, y = np.rint(pts[k]).astype(int)
            marked[y - 1 : y + 2, x - 1 : x + 2] = [255, 0, 255]
            diff = np.abs(align_crop(marked, pts, size).astype(int) - align_crop(img, pts, size).astype(int)).sum(-1)
            cy, cx = np.unravel_index(diff.argmax(), diff.shape)
            # a similarity transform fits five points in least squares: each lands near, not on, its template point
            assert abs(cx - point[0]) <= 0.06 * size and abs(cy - point[1]) <= 0.06 * size


def test_crop_folder_lists_images_without_a_face(tmp_path: Path) -> None:
    images, points = _rendered(3)
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(src / ("sub" if i == 2 else "") / f"f{i}.jpg")
    (src / "broken.png").write_bytes(b"not an image")
    known = list(zip(images[:2], points[:2]))  # the third face is "not found"

    def landmarker(rgb: np.ndarray) -> np.ndarray | None:
        """The rendered landmarks of the image (JPEG-decoded, so matched by closeness)."""
        return next((p for img, p in known if np.abs(rgb.astype(int) - img.astype(int)).mean() < 8), None)

    rec = crop_folder(src, tmp_path / "crops", size=48, landmarker=landmarker, log=lambda m: None)
    assert (rec["n_images"], rec["n_cropped"], rec["no_face"], rec["unreadable"]) == (4, 2, ["sub/f2.jpg"], ["broken.png"])
    assert Image.open(tmp_path / "crops" / "f0.png").size == (48, 48)
    assert (tmp_path / "crops" / "no_face.txt").read_text() == "sub/f2.jpg\n"
    assert json.loads((tmp_path / "crops" / "crops.json").read_text())["scale"] == 1.3
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    with pytest.raises(DfrobustError, match="not made by `dfrobust data crop`"):
        crop_folder(src, tmp_path / "other", landmarker=landmarker)


@pytest.mark.skipif(not FFHQ.is_dir(), reason="needs ../shared/data/ffhq-real-200")
@pytest.mark.skipif(not faceswap_extra_available(), reason="the faceswap extra (dlib) is not installed")
def test_cli_crops_real_photos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    for p in sorted(FFHQ.glob("*.jpg"))[:3]:
        shutil.copy(p, src / p.name)
    Image.new("RGB", (120, 120), (90, 140, 200)).save(src / "sky.png")  # no face in a flat colour
    assert main(["data", "crop", str(src), "--out", str(tmp_path / "crops"), "--size", "128"]) == 0
    assert "3 of 4 images cropped" in capsys.readouterr().out
    assert (tmp_path / "crops" / "no_face.txt").read_text() == "sky.png\n"
    crop = np.asarray(Image.open(tmp_path / "crops" / f"{sorted(FFHQ.glob('*.jpg'))[0].stem}.png"))
    assert crop.shape == (128, 128, 3) and crop[40:90, 40:90].std() > 10  # a face, not an empty border
