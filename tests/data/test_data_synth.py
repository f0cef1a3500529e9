"""Synthetic faces: renderer, face swap geometry, and the generated dataset folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dfrobust.constants import FAKE, REAL
from dfrobust.data.dataset import load_split
from dfrobust.data.faces import render_faces, sample_identities, sample_scenes
from dfrobust.data.folders import is_dataset_folder
from dfrobust.data.manifest import read_manifest
from dfrobust.data.swap import decoder_checkerboard, face_mask, generator_resample, match_colors, swap_faces, warp_to_landmarks
from dfrobust.data.synthetic import generate_synthetic
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import sha256_file


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "a", n=24, size=32, seed=0)


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    ident, scene = sample_identities(rng, 6), sample_scenes(rng, 6)
    return render_faces(ident, scene, 48, rng)


def test_same_seed_gives_byte_identical_folders(synth: Path, tmp_path: Path) -> None:
    again = generate_synthetic(tmp_path / "b", n=24, size=32, seed=0)
    assert _files(again) == _files(synth)
    other = _files(generate_synthetic(tmp_path / "c", n=24, size=32, seed=1))
    images = [k for k in other if k.endswith(".png")]
    assert sum(other[k] != _files(synth)[k] for k in images) == len(images)


def test_manifest_records_how_and_what(synth: Path) -> None:
    m = read_manifest(synth)
    assert m["image_size"] == [32, 32] and is_dataset_folder(synth)
    made = m["created_by"]
    assert made["args"]["seed"] == 0 and made["args"]["n"] == 24 and made["args"]["size"] == 32
    assert made["command"].startswith("dfrobust data synth") and "--seed 0" in made["command"]
    assert "dfrobust" in made["versions"] and "feather" in made["args"]
    assert m["counts"] == {"train": {"fake": 9, "real": 9}, "test": {"fake": 3, "real": 3}}
    for rec in m["images"]:
        assert sha256_file(synth / rec["path"]) == rec["sha256"]
        assert {"identity", "pose", "jpeg_quality", "camera_noise"} <= set(rec)
        if rec["label"] == FAKE:
            assert rec["source_identity"] != rec["identity"]
            assert set(rec["swap"]) == {"feather", "resample", "color_match", "artifacts"}
        else:
            assert "source_identity" not in rec
    assert len(m["identities"]) >= 8 and "skin" in m["identities"][0]


def test_train_and_test_identities_are_disjoint(synth: Path) -> None:
    recs = read_manifest(synth)["images"]
    ids = {s: {r["identity"] for r in recs if r["split"] == s} | {r.get("source_identity", -1) for r in recs if r["split"] == s} - {-1}
           for s in ("train", "test")}  # fmt: skip
    assert ids["train"].isdisjoint(ids["test"])


def test_images_load_as_a_dataset(synth: Path) -> None:
    test = load_split(synth, "test")
    assert test.images().shape == (6, 3, 32, 32) and sorted(test.y.tolist()) == [FAKE] * 3 + [REAL] * 3


def test_finished_folder_is_kept_and_other_settings_refused(synth: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in synth.rglob("*.png")}
    assert generate_synthetic(synth, n=24, size=32, seed=0) == synth
    assert before == {p: p.stat().st_mtime_ns for p in synth.rglob("*.png")}
    with pytest.raises(DfrobustError, match="already exists"):
        generate_synthetic(synth, n=24, size=32, seed=5)


def test_bad_knobs_are_one_line_errors(tmp_path: Path) -> None:
    for kwargs in ({"feather": 0}, {"resample": 0.5}, {"color_mismatch": 2}, {"identities": 2}):
        with pytest.raises(DfrobustError, match="^--"):
            generate_synthetic(tmp_path / "x", n=16, size=32, **kwargs)
    with pytest.raises(DfrobustError, match="--n"):
        generate_synthetic(tmp_path / "x", n=4, size=32)
    assert not (tmp_path / "x").exists()


def test_renderer_landmarks_sit_on_the_face(faces: tuple[np.ndarray, np.ndarray]) -> None:
    images, lm = faces
    assert images.shape == (6, 48, 48, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    assert ((lm > 0) & (lm < 47)).all()
    eye_l, eye_r = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    assert (eye_l[:, 0] < eye_r[:, 0]).all()
    assert (lm[:, 8, 1] > lm[:, 57, 1]).all() and (lm[:, 57, 1] > lm[:, 33, 1]).all() and (lm[:, 33, 1] > eye_l[:, 1]).all()
    # pupils are dark: the darkest pixel near each eye centre is much darker than the cheek
    for img, e, cheek in zip(images, eye_l.round().astype(int), lm[:, 3].round().astype(int)):
        patch = img[e[1] - 1 : e[1] + 2, e[0] - 1 : e[0] + 2].mean(-1)
        cheek_v = img[cheek[1], cheek[0] + 3].mean()
        assert patch.min() < 0.8 * cheek_v


def test_warp_moves_landmarks_onto_the_target(faces: tuple[np.ndarray, np.ndarray]) -> None:
    _, lm = faces
    src_lm, dst_lm = torch.from_numpy(lm[:3]), torch.from_numpy(lm[3:])
    h = w = 48
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    coords = torch.stack([xx, yy, torch.zeros_like(xx)])[None].repeat(3, 1, 1, 1)  # each pixel shows its own (x, y)
    warped = warp_to_landmarks(coords, src_lm, dst_lm)
    inner = [30, 33, 39, 42, 51, 57]  # nose, eye corners, lips: inside the triangulation
    for k in range(3):
        at = dst_lm[k, inner].round().long()
        got = warped[k, :2, at[:, 1], at[:, 0]].T
        expect = src_lm[k, inner] + (at - dst_lm[k, inner])  # nearest pixel centre, shifted
        assert (got - expect).abs().max() < 1.0


def test_swap_with_itself_is_nearly_identity_and_leaves_outside_alone(faces: tuple[np.ndarray, np.ndarray]) -> None:
    images, lm = faces
    x, lmt = torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(lm)
    ones = torch.ones(len(x))
    same, mask = swap_faces(x, lmt, x, lmt, feather=0.1 * ones, resample=ones, color_match=ones)
    assert (same - x).abs().max() < 0.02
    fake, mask = swap_faces(x[:3], lmt[:3], x[3:], lmt[3:], feather=0.1 * ones[:3], resample=2 * ones[:3], color_match=0.5 * ones[:3])
    outside = mask == 0
    assert torch.equal(fake.masked_select(outside.expand_as(fake)), x[:3].masked_select(outside.expand_as(fake)))
    assert (fake - x[:3]).abs().amax((1, 2, 3)).min() > 0.1


def test_face_mask_covers_the_inner_face_only(faces: tuple[np.ndarray, np.ndarray]) -> None:
    _, lm = faces
    lmt = torch.from_numpy(lm)
    mask = face_mask(lmt, (48, 48), torch.full((6,), 0.05))
    assert mask.shape == (6, 1, 48, 48) and mask.min() >= 0 and mask.max() <= 1
    nose = lmt[:, 30].round().long()
    assert (mask[torch.arange(6), 0, nose[:, 1], nose[:, 0]] > 0.99).all()
    assert (mask[:, :, :2].amax() == 0) and (mask[:, :, -2:].amax() == 0)  # top and bottom rows: hair, clothes


def test_generator_resample_and_colour_match() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(generator_resample(x, torch.ones(4)), x, atol=1e-6)
    blurred = generator_resample(x, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    hf = (blurred[..., 1:] - blurred[..., :-1]).abs().mean((1, 2, 3))
    assert (hf[1:] < hf[:-1]).all()  # stronger factor, less high-frequency energy
    flat = torch.full((2, 3, 8, 8), 0.5)
    textured = decoder_checkerboard(flat, torch.tensor([0.0, 0.1]))
    assert torch.equal(textured[0], flat[0])
    assert torch.allclose(textured[1, :, 0, :3], torch.tensor([0.4, 0.6, 0.4]).expand(3, 3))  # the decoder's checkerboard
    assert torch.allclose(textured[1, :, 1, :3], torch.tensor([0.6, 0.4, 0.6]).expand(3, 3))
    target = torch.rand(4, 3, 32, 32) * 0.3 + 0.6
    w = torch.ones(4, 1, 32, 32)
    full = match_colors(x, target, w, torch.ones(4))
    assert torch.allclose(full.mean((2, 3)), target.mean((2, 3)), atol=0.02)
    assert torch.allclose(match_colors(x, target, w, torch.zeros(4)), x, atol=1e-6)


def test_generation_runs_single_threaded_and_restores_threads() -> None:
    from dfrobust.data.threads import single_threaded_torch

    before = torch.get_num_threads()
    with single_threaded_torch():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
