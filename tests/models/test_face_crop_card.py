"""A card's `face_crop = true`: DeepfakeBench's aligned crop inside the model, equal to `data crop`'s, with gradients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dfrobust.data.crop import align_crop
from dfrobust.data.faces import render_faces, sample_identities, sample_scenes
from dfrobust.data.landmarks import faceswap_extra_available
from dfrobust.errors import DfrobustError
from dfrobust.models.cards import CardDetector, load_card, read_card
from dfrobust.models.face_crop import FaceCrop


def _faces(n: int = 2, size: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images, points = render_faces(sample_identities(rng, n), sample_scenes(rng, n), size, rng)
    return (images * 255).round().astype(np.uint8), points


def test_in_model_crop_equals_the_folder_crop_and_passes_gradients() -> None:
    images, points = _faces()
    known = {img.tobytes(): p for img, p in zip(images, points)}
    crop = FaceCrop(48, landmarker=lambda rgb: known.get(rgb.tobytes()))
    x = torch.tensor(images, dtype=torch.float32).permute(0, 3, 1, 2).div(255).requires_grad_(True)
    out = crop(x)
    expected = np.stack([align_crop(img, p, 48) for img, p in zip(images, points)])
    got = out.detach().permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(got - expected).mean() < 1.5  # same geometry; bilinear sampling vs skimage's, 8-bit rounding
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert crop.no_face == 0


def test_no_face_uses_the_whole_image_and_counts_it() -> None:
    crop = FaceCrop(16, landmarker=lambda rgb: None)
    x = torch.rand(3, 3, 16, 16)
    assert torch.allclose(crop(x), x, atol=1e-5) and crop.no_face == 3


def test_card_detector_crops_before_normalising(tmp_path: Path) -> None:
    card = tmp_path / "c.toml"
    card.write_text('source = "deployed:resnet50_cnndetection"\nface_crop = true\n')
    assert read_card(card).face_crop is True
    card.write_text('source = "deployed:resnet50_cnndetection"\nface_crop = "yes"\n')
    with pytest.raises(DfrobustError, match="`face_crop` must be true or false"):
        read_card(card)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    seen = []
    model = CardDetector(net, "logits", 0, (16, 16), crop=FaceCrop(16, landmarker=lambda rgb: seen.append(rgb.shape) or None))
    assert model(torch.rand(2, 3, 40, 40)).shape == (2, 2) and seen == [(40, 40, 3)] * 2  # landmarks on the full photo


@pytest.mark.skipif(not faceswap_extra_available(), reason="the faceswap extra (dlib) is not installed")
def test_load_card_with_face_crop_uses_dlib(tmp_path: Path) -> None:
    card = tmp_path / "c.toml"
    card.write_text(
        'source = "torchvision:resnet18"\nnormalization = "imagenet"\noutput = "logits"\nfake_index = 0\n'
        "input_size = [64, 64]\nface_crop = true\n"
    )
    model, meta = load_card(card)
    assert meta["face_crop"] is True and isinstance(model.crop, FaceCrop) and model.crop.no_face == 2  # the noise probe has no face
