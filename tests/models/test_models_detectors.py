"""Detectors: head and pixel-range contract, half-Huber ReLU, --init, checkpoint round trip, input gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector, save_detector
from dfrobust.models.detectors import IMAGENET_MEAN, IMAGENET_STD, HalfHuberReLU, build_detector
from dfrobust.models.gradients import input_gradient_norms


@pytest.mark.parametrize("arch", ["tiny", "resnet18", "mobilenet_v3_small"])
def test_two_logit_head_on_pixels_in_unit_range(arch: str) -> None:
    torch.manual_seed(0)
    model = build_detector(arch).eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-1].out_features == 2
    out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 2) and torch.isfinite(out).all()


def test_global_pooling_vgg_is_vgg_with_its_replicated_features_folded() -> None:
    # at 32 px VGG's features end in 1x1, which the 7x7 pooling replicates 49 times: summing the
    # first classifier layer's weights over those 49 positions gives the global-pooling network
    torch.manual_seed(0)
    vgg = build_detector("vgg16_bn").eval()
    gap = build_detector("vgg16_bn_gap").eval()
    state = dict(vgg.state_dict())
    w = state["backbone.classifier.0.weight"]
    state["backbone.classifier.0.weight"] = w.view(w.shape[0], 512, 49).sum(-1)
    gap.load_state_dict(state)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gap(x), vgg(x), atol=1e-4)
    assert sum(p.numel() for p in vgg.parameters()) - sum(p.numel() for p in gap.parameters()) == 4096 * 512 * 48
    # at 64 px the 2x2 map is spread over 49 cells: not the same network, but the head still fits
    assert gap(torch.rand(1, 3, 64, 64)).shape == (1, 2)


def test_imagenet_normalization_lives_inside_the_model() -> None:
    torch.manual_seed(0)
    model = build_detector("tiny", normalization="imagenet").eval()
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(model(x), model.backbone((x - mean) / std), atol=1e-6)
    assert not torch.allclose(model(x), model.backbone(x), atol=1e-3)


def test_half_huber_relu_values_and_smooth_derivative() -> None:
    act = HalfHuberReLU(0.5)
    x = torch.tensor([-1.0, 0.0, 0.25, 0.5, 2.0], requires_grad=True)
    y = act(x)
    # 0 below 0, x^2 / (2 * 0.5) = x^2 on [0, 0.5], x - 0.25 above
    assert torch.allclose(y, torch.tensor([0.0, 0.0, 0.0625, 0.25, 1.75]))
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(grad, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_halfhuber_replaces_every_relu_and_survives_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_detector("resnet18", activation="halfhuber").eval()
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, HalfHuberReLU) for m in model.modules()) > 0
    path = save_detector(model, tmp_path / "r.safetensors", {"input_size": [32, 32]})
    loaded, meta = load_detector(path)
    assert meta["activation"] == "halfhuber" and loaded.activation == "halfhuber"
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    with pytest.raises(DfrobustError, match="unknown activation"):
        build_detector("tiny", activation="gelu")


def test_checkpoint_round_trip_keeps_outputs_and_sidecar(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_detector("resnet18").eval()
    meta = {"input_size": [32, 32], "seed": 3, "training": {"lr": 0.001}, "metrics": {"test": {"accuracy": 0.5}}}
    path = save_detector(model, tmp_path / "m.safetensors", meta)
    loaded, side = load_detector(path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    assert side["arch"] == "resnet18" and side["classes"] == {"fake": 0, "real": 1}
    assert side["training"] == {"lr": 0.001} and side["seed"] == 3 and "torch" in side["versions"]
    with pytest.raises(DfrobustError, match="tiny was expected"):
        load_detector(path, expect_arch="tiny")
    with pytest.raises(DfrobustError, match="trained on 32x32"):
        load_detector(path, expect_input_size=[64, 64])


@pytest.mark.parametrize("arch", ["vgg16_bn_gap", "tiny"])
def test_loaded_detector_is_built_empty_and_takes_every_tensor_from_the_file(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build_detector(arch, normalization="imagenet").eval()
    path = save_detector(model, tmp_path / "m.safetensors", {"input_size": [32, 32]})
    torch.manual_seed(99)  # a random init would differ from the saved weights: only the file may set them
    loaded, _ = load_detector(path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert not any(t.is_meta for t in tensors) and all(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded.mean, model.mean)  # the normalisation, not in the file, made again
    empty = build_detector(arch, empty=True)
    assert all(p.is_meta for p in empty.parameters())
    with pytest.raises(DfrobustError, match="takes no init"):
        build_detector(arch, empty=True, init=tmp_path / "m.safetensors")


def test_init_from_local_torchvision_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    reference = torchvision.models.resnet18()
    weights = tmp_path / "resnet18-local.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    model = build_detector("resnet18", init=weights)
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    assert model.backbone.fc.out_features == 2
    # names that do not fit, and same names with other shapes, are one-line user errors
    with pytest.raises(DfrobustError, match="does not fit tiny"):
        build_detector("tiny", init=weights)
    other = tmp_path / "resnet18-2class.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision.models.resnet18(num_classes=2).state_dict().items()}, str(other))
    with pytest.raises(DfrobustError, match="shapes differ"):
        build_detector("resnet18", init=other)


def test_input_gradient_norms_match_per_image_jacobians() -> None:
    torch.manual_seed(3)
    model = build_detector("tiny").eval()
    x = torch.rand(5, 3, 16, 16)
    norms = input_gradient_norms(model, x, batch_size=2)
    expected = torch.stack([torch.autograd.functional.jacobian(lambda img: model(img[None])[0], xi).norm() for xi in x])
    assert torch.allclose(norms, expected, rtol=1e-4, atol=1e-7)
