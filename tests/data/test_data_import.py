"""Folder import: layouts, odd and broken files, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfrobust.data.dataset import load_split
from dfrobust.data.folders import import_folder, import_report, is_dataset_folder
from dfrobust.data.manifest import read_manifest
from dfrobust.errors import DfrobustError


def _rgb(w: int, h: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, im: Image.Image, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def _jpeg_bytes(w: int, h: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb(w, h, seed)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_odd_folder(root: Path) -> Path:
    """real/ and fake/ with every kind of file a user may have, most of them 40x30."""
    for i in range(4):
        _save(root / "real" / f"rgb{i}.png", Image.fromarray(_rgb(40, 30, i)))
    _save(root / "real" / "grey.jpg", Image.fromarray(_rgb(40, 30, 10)[..., 0], mode="L"), quality=90)
    _save(root / "real" / "palette.png", Image.fromarray(_rgb(40, 30, 11)).convert("P"))
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 20:, 3] = 255  # left half transparent, right half opaque red
    _save(root / "real" / "alpha.png", Image.fromarray(rgba, mode="RGBA"))
    _save(root / "real" / "big.webp", Image.fromarray(_rgb(80, 60, 12)), quality=90)
    for i in range(4):
        (root / "fake").mkdir(parents=True, exist_ok=True)
        (root / "fake" / f"f{i}.jpg").write_bytes(_jpeg_bytes(40, 30, 20 + i))
    _save(root / "fake" / "nested" / "deep.png", Image.fromarray(_rgb(50, 50, 30)))
    (root / "fake" / "truncated.jpg").write_bytes(_jpeg_bytes(40, 30, 40)[:400])
    (root / "fake" / "garbage.png").write_bytes(b"this is not an image")
    (root / "fake" / "notes.txt").write_text("ignored")
    _save(root / "fake" / ".hidden.png", Image.fromarray(_rgb(40, 30, 50)))
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("imp")
    src = make_odd_folder(root / "src")
    return src, import_folder(src, root / "out", seed=0)


def test_odd_files_are_converted_and_broken_ones_listed(imported: tuple[Path, Path]) -> None:
    src, out = imported
    m = read_manifest(out)
    report = import_report(out)
    assert report["n_skipped"] == 2
    assert {s["path"] for s in report["skipped"]} == {"fake/truncated.jpg", "fake/garbage.png"}
    assert all(s["reason"] for s in report["skipped"])
    assert report["size"] == 30 and "40x30" in report["size_rule"]  # most common size's shorter side
    assert m["image_size"] == [30, 30] and len(m["images"]) == 8 + 5
    sources = {r["source"] for r in m["images"]}
    assert "fake/nested/deep.png" in sources and "real/big.webp" in sources and "fake/.hidden.png" not in sources
    for rec in m["images"]:
        with Image.open(out / rec["path"]) as im:
            assert im.mode == "RGB" and im.size == (30, 30) and im.format == "PNG"
    alpha = next(r for r in m["images"] if r["source"] == "real/alpha.png")
    arr = np.asarray(Image.open(out / alpha["path"]))
    assert (arr[:, 2] == 255).all()  # transparent part composited on white (centre crop keeps 5 px of it)
    assert (arr[:, -2] == [255, 0, 0]).all()


def test_flat_layout_is_split_stratified(imported: tuple[Path, Path]) -> None:
    _, out = imported
    counts = read_manifest(out)["counts"]
    assert counts["test"] == {"fake": 1, "real": 2} and counts["train"] == {"fake": 4, "real": 6}
    assert len(load_split(out, "train")) == 10


def test_split_layout_keeps_the_given_split(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("Real", "FAKE"):  # folder names in any case
            for i in range(n):
                _save(src / split / cls / f"{i}.png", Image.fromarray(_rgb(20 + 4 * i, 24, i)))
    out = import_folder(src, tmp_path / "out", size=16, seed=1)
    m = read_manifest(out)
    assert m["counts"] == {"train": {"fake": 3, "real": 3}, "test": {"fake": 2, "real": 2}}
    assert all(r["source"].startswith(r["split"] + "/") for r in m["images"])
    assert m["image_size"] == [16, 16] and import_report(out)["layout"] == "split" and is_dataset_folder(out)


def test_imbalance_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(8):
        _save(src / "real" / f"{i}.png", Image.fromarray(_rgb(16, 16, i)))
    for i in range(2):
        _save(src / "fake" / f"{i}.png", Image.fromarray(_rgb(16, 16, 10 + i)))
    imb = import_report(import_folder(src, tmp_path / "out"))["imbalance"]
    assert imb["larger"] == "real" and imb["ratio"] == 4.0 and "8 real vs 2 fake" in imb["note"]


def test_reimport_is_skipped_and_changed_source_refused(imported: tuple[Path, Path]) -> None:
    src, out = imported
    manifest = (out / "manifest.json").stat().st_mtime_ns
    assert import_folder(src, out, seed=0) == out
    assert (out / "manifest.json").stat().st_mtime_ns == manifest
    with pytest.raises(DfrobustError, match="already exists"):
        import_folder(src, out, seed=3)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "found no images"),
        ({"a.png": 1}, "found 1 images directly"),
        ({"real/a.png": 1}, "no fake/ folder"),
        ({"real/a.png": 1, "fake/readme.txt": 0}, "fake has no images"),
        ({"train/real/a.png": 1, "train/fake/a.png": 1}, "no test/ folder"),
        ({"train/real/a.png": 1, "train/fake/a.png": 1, "test/real/a.png": 1}, "test has no fake/ folder"),
        ({"real/a.png": 1, "fake/a.png": 1, "train/real/a.png": 1}, "mixes"),
        ({"real/a.png": 1, "fake/a.png": 0}, "no readable fake images"),
    ],
)
def test_bad_layouts_are_one_line_errors(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for rel, good in layout.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png") and good:
            Image.fromarray(_rgb(16, 16, 0)).save(path)
        else:
            path.write_bytes(b"not an image")
    with pytest.raises(DfrobustError, match=message) as err:
        import_folder(src, tmp_path / "out")
    assert "\n" not in str(err.value) and "real" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_source_and_too_few_test_images(tmp_path: Path) -> None:
    with pytest.raises(DfrobustError, match="does not exist"):
        import_folder(tmp_path / "nope", tmp_path / "out")
    src = tmp_path / "src"
    for cls in ("real", "fake"):
        _save(src / cls / "a.png", Image.fromarray(_rgb(16, 16, 0)))
    with pytest.raises(DfrobustError, match="test split has no readable"):
        import_folder(src, tmp_path / "out")


def test_cnndetection_class_names_are_imported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for split, n in (("train", 3), ("test", 2)):
        for cls, shade in (("0_real", 0), ("1_fake", 50)):
            for i in range(n):
                _save(src / split / cls / f"{i}.png", Image.fromarray(_rgb(16, 16, shade + i)))
    m = read_manifest(import_folder(src, tmp_path / "out", size=16))
    assert m["counts"] == {"train": {"fake": 3, "real": 3}, "test": {"fake": 2, "real": 2}}
    assert {r["source"].split("/")[1]: r["label"] for r in m["images"]} == {"1_fake": 0, "0_real": 1}  # fake = 0, real = 1
