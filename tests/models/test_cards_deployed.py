"""Deployed detector families by name (`deployed:NAME` cards) and the card examples in docs/cards/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dfrobust.errors import DfrobustError
from dfrobust.models.cards import load_card, read_card
from dfrobust.models.deployed import FAMILIES, adapt_state, build_family

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cards"
HAVE_TIMM = importlib.util.find_spec("timm") is not None


def test_every_family_has_a_docs_card_with_deepfakebench_s_preprocessing() -> None:
    cards = {read_card(p).spec: read_card(p) for p in DOCS.glob("*.toml")}
    assert set(cards) == set(FAMILIES)
    x = cards["xception"]
    assert (x.input_size, x.mean, x.std, x.output, x.fake_index) == ((256, 256), (0.5,) * 3, (0.5,) * 3, "logits", 1)
    assert cards["efficientnet_b4"].input_size == (256, 256) and cards["efficientnet_b4"].mean == (0.5,) * 3
    r = cards["resnet50_cnndetection"]
    assert (r.input_size, r.normalization, r.output, r.fake_index) == ((224, 224), "imagenet", "logit", 1)


def test_a_card_key_overrides_the_family_and_unknown_names_fail(tmp_path: Path) -> None:
    card = tmp_path / "x.toml"
    card.write_text('source = "deployed:xception"\ninput_size = [128, 128]\n')
    assert read_card(card).input_size == (128, 128)
    card.write_text('source = "deployed:vit9"\n')
    with pytest.raises(DfrobustError, match="unknown deployed detector 'vit9'"):
        read_card(card)


def test_cnndetection_checkpoint_loads_and_its_logit_means_fake(tmp_path: Path) -> None:
    net = build_family("resnet50_cnndetection", 1)
    torch.manual_seed(0)
    torch.nn.init.normal_(net.fc.weight, std=0.05)
    torch.save({"model": net.state_dict()}, tmp_path / "cnndet.pth")  # CNNDetection's checkpoint layout
    (tmp_path / "c.toml").write_text('source = "deployed:resnet50_cnndetection"\nweights = "cnndet.pth"\n')
    model, meta = load_card(tmp_path / "c.toml", probe_size=(64, 64))
    x = torch.rand(2, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        z = net(
            (
                torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
                - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            )
            / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        )
        p_fake = model(x).softmax(1)[:, 0]
    assert torch.allclose(p_fake, torch.sigmoid(z).reshape(-1), atol=1e-5)
    assert meta["input_size"] == [224, 224]


@pytest.mark.skipif(not HAVE_TIMM, reason="timm is not installed (pip install 'dfrobust[timm]')")
def test_a_deepfakebench_xception_checkpoint_maps_onto_timm(tmp_path: Path) -> None:
    net = build_family("xception", 2)
    own = net.state_dict()
    dfb = {("backbone." + ("last_linear." + k[3:] if k.startswith("fc.") else k)): v.clone() + 1 for k, v in own.items()}
    mapped = adapt_state(dfb, net)
    assert set(mapped) == set(own) and torch.equal(mapped["fc.weight"], own["fc.weight"] + 1)
    torch.save({"state_dict": dfb}, tmp_path / "x.pth")
    (tmp_path / "x.toml").write_text('source = "deployed:xception"\nweights = "x.pth"\n')
    model, meta = load_card(tmp_path / "x.toml", probe_size=(32, 32))
    assert torch.equal(model.model.conv1.weight, own["conv1.weight"] + 1) and meta["missing_keys"] == []
