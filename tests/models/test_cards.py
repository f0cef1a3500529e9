"""Detector cards: a user's one-logit module attacked through a card, library sources, conversions, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from dfrobust.attacks.base import make_attack
from dfrobust.cli import main
from dfrobust.constants import FAKE, REAL
from dfrobust.errors import DfrobustError
from dfrobust.models.cards import CardDetector, load_card, read_card, to_two_logits
from dfrobust.models.detectors import IMAGENET_MEAN, IMAGENET_STD
from dfrobust.models.loading import load_model_arg, model_display_name
from dfrobust.utils.io import load_image, read_csv, save_png

USER_CODE = '''
import torch
from torch import nn


class OneLogitNet(nn.Module):
    """A user's detector: one logit, sigmoid = P(fake), no normalisation inside."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.features(x))


def build():
    return OneLogitNet()
'''


def write_card(path: Path, **keys: object) -> Path:
    """A TOML card from keyword arguments (strings quoted, lists and numbers as TOML)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return str(v)

    path.write_text("".join(f"{k} = {value(v)}\n" for k, v in keys.items()))
    return path


def tint_image(rng: np.random.Generator, size: int, fake: bool) -> np.ndarray:
    """A smooth random colour field; fakes get a red-shifted centre (a smooth cue one gradient step can undo)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    slope = rng.uniform(-0.2, 0.2, (3, 2))
    img = rng.uniform(0.25, 0.75, 3)[None, None] + xx[..., None] * slope[:, 0] + yy[..., None] * slope[:, 1]
    img += rng.normal(0, 0.02, img.shape)
    if fake:
        q = size // 4
        img[q : 3 * q, q : 3 * q] += [0.35, 0.0, -0.2]
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_folder(root: Path, n: int = 8, size: int = 24, seed: int = 0) -> Path:
    """A CNNDetection-style folder: ``0_real/`` and ``1_fake/`` with ``n`` images each."""
    rng = np.random.default_rng(seed)
    for name, fake in (("0_real", False), ("1_fake", True)):
        for i in range(n):
            save_png(root / name / f"{i:03d}.png", tint_image(rng, size, fake))
    return root


@pytest.fixture(scope="module")
def user_detector(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A one-logit user package on sys.path, trained on toy images, saved as a .pth state dict, plus its card."""
    root = tmp_path_factory.mktemp("user")
    pkg = root / "code" / "userdet_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(USER_CODE)
    sys.path.insert(0, str(root / "code"))
    try:
        from userdet_pkg.nets import build

        torch.manual_seed(0)
        rng = np.random.default_rng(1)
        x = torch.tensor(np.stack([tint_image(rng, 24, fake=i % 2 == 0) for i in range(96)])).permute(0, 3, 1, 2).float() / 255
        is_fake = torch.tensor([float(i % 2 == 0) for i in range(96)])
        net = build()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(250):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(net(x).squeeze(1), is_fake).backward()
            opt.step()
        weights = root / "det" / "weights.pth"
        weights.parent.mkdir()
        torch.save(net.state_dict(), weights)
        card = write_card(root / "det" / "mine.toml", source="python:userdet_pkg.nets:build", weights="weights.pth",
                          input_size=[24, 24], normalization="none", output="logit", fake_index=1, name="user-net")  # fmt: skip
        yield {"card": card, "weights": weights, "data": write_folder(root / "data")}
    finally:
        sys.path.remove(str(root / "code"))


def test_card_wraps_a_one_logit_module_in_the_convention(user_detector: dict[str, Path]) -> None:
    model, meta = load_model_arg(user_detector["card"])
    assert isinstance(model, CardDetector) and meta["name"] == "user-net" == model_display_name(user_detector["card"])
    assert meta["raw_output_shape"] == [2, 1] and meta["kind"] == "card" and len(meta["sha256"]) == 64
    x = torch.rand(5, 3, 40, 31)  # any size in: resized inside
    out = model(x)
    assert out.shape == (5, 2)
    raw = model.model(F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False, antialias=True))
    assert torch.allclose(out.softmax(1)[:, FAKE], torch.sigmoid(raw).squeeze(1), atol=1e-6)
    # the trained module is correct on its clean images (else "fooling" it would mean nothing)
    files = sorted(user_detector["data"].rglob("*.png"))
    imgs = torch.stack([load_image(f) for f in files])
    labels = torch.tensor([REAL if f.parent.name == "0_real" else FAKE for f in files])
    assert (model(imgs).argmax(1) == labels).float().mean() >= 0.9


@pytest.mark.parametrize(
    ("attack", "flags"),
    [("fgsm", ["--eps", "0.15"]), ("pgd", ["--eps", "0.1", "--steps", "5"]),
     ("cw", ["--kappa", "1", "--search-steps", "2", "--max-steps", "60", "--c-range", "1", "100"])],
)  # fmt: skip
def test_attacks_through_the_card_fool_the_user_module(
    user_detector: dict[str, Path], tmp_path: Path, attack: str, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / attack
    args = ["attack", "--data", str(user_detector["data"]), "--source", str(user_detector["card"]), "--attack", attack,
            "--out", str(out), "--device", "cpu", "--batch-size", "8", *flags]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    rows = read_csv(out / "results.csv")
    assert len(rows) == 8 and {r["target"] for r in rows} == {"user-net"} and {r["setting"] for r in rows} == {"whitebox"}
    correct = [r for r in rows if r["clean_pred"] == r["label"]]
    fooled = [r for r in correct if r["success"] == "1"]
    assert len(correct) >= 6 and len(fooled) / len(correct) >= 0.75
    # real perturbations, not the silent zero of an unwrapped one-logit model (a saturated image may keep a zero gradient)
    assert all(float(r["l2"]) > 0 for r in fooled) and sum(float(r["l2"]) > 0 for r in rows) >= 6
    table = read_csv(out / "table2.csv")[0]
    assert int(table["n_correct"]) == len(correct) and float(table["success_rate_on_correct"]) >= 0.75


def test_the_same_pth_without_a_card_is_refused(user_detector: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["attack", "--data", str(user_detector["data"]), "--source", str(user_detector["weights"]), "--attack", "fgsm",
            "--out", str(tmp_path / "x"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "write a detector card" in err and "dfrobust card check --help" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_attacks_refuse_a_model_that_is_not_n_by_2(user_detector: dict[str, Path]) -> None:
    model, _ = load_card(user_detector["card"])
    with pytest.raises(DfrobustError, match="`output` key"):
        make_attack("fgsm")(model.model, torch.rand(2, 3, 24, 24), torch.zeros(2, dtype=torch.long))


def _softmax_fake(out: torch.Tensor, output: str, fake_index: int) -> torch.Tensor:
    return to_two_logits(out, output, fake_index).softmax(1)[:, FAKE]


def test_conversions_keep_the_models_own_probability() -> None:
    torch.manual_seed(0)
    z = torch.randn(6) * 3
    assert torch.allclose(_softmax_fake(z[:, None], "logit", 1), torch.sigmoid(z), atol=1e-6)  # sigmoid = P(fake)
    assert torch.allclose(_softmax_fake(z, "logit", 0), 1 - torch.sigmoid(z), atol=1e-6)  # sigmoid = P(real)
    # the logit margin attacks use is the raw logit itself
    two = to_two_logits(z, "logit", 1)
    assert torch.allclose(two[:, FAKE] - two[:, REAL], z)
    logits = torch.randn(6, 2)
    assert torch.allclose(_softmax_fake(logits, "logits", 1), logits.softmax(1)[:, 1], atol=1e-6)
    assert torch.equal(to_two_logits(logits, "logits", 0), logits)  # dfrobust's own order is unchanged
    three = torch.randn(6, 3)  # several classes: fake against all the others
    assert torch.allclose(_softmax_fake(three, "logits", 2), three.softmax(1)[:, 2], atol=1e-6)
    probs = torch.softmax(torch.randn(6, 2), 1)
    assert torch.allclose(to_two_logits(probs, "probs", 1).softmax(1)[:, FAKE], probs[:, 1], atol=1e-6)
    assert torch.allclose(to_two_logits(probs, "probs", 1), probs.log()[:, [1, 0]], atol=1e-6)  # log-probabilities
    p = torch.sigmoid(z)
    assert torch.allclose(_softmax_fake(p[:, None], "probs", 1), p, atol=1e-6)
    assert torch.allclose(_softmax_fake(p, "probs", 0), 1 - p, atol=1e-6)
    with pytest.raises(DfrobustError, match='output = "logit"'):
        to_two_logits(logits, "logit", 1)
    with pytest.raises(DfrobustError, match="`output` key"):
        to_two_logits(z, "logits", 0)
    with pytest.raises(DfrobustError, match="fake_index"):
        to_two_logits(three, "logits", 3)


def test_torchvision_card_with_imagenet_normalisation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=2).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    card = write_card(tmp_path / "r18.toml", source="torchvision:resnet18", weights="r18.safetensors", input_size=[32, 32],
                      normalization="imagenet", output="logits", fake_index=1)  # fmt: skip
    model, meta = load_model_arg(card)
    assert meta["name"] == "r18" and meta["input_size"] == [32, 32] and meta["normalization"]["kind"] == "imagenet"
    x = torch.rand(3, 3, 48, 48)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    small = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        expected = net((small - mean) / std)[:, [1, 0]]  # fake_index 1 -> column 0
        assert torch.allclose(model(x), expected, atol=1e-5)
    # the gradient flows end to end, through resize and normalisation
    x.requires_grad_(True)
    model(x)[:, REAL].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_timm_card(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=1).eval()
    torch.save(net.state_dict(), tmp_path / "t.pth")
    card = write_card(tmp_path / "t.toml", source="timm:test_resnet", weights="t.pth", input_size=[32, 32],
                      normalization={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}, output="logit", fake_index=0)  # fmt: skip
    model, meta = load_card(card)
    assert meta["normalization"]["kind"] == "custom" and meta["raw_output_shape"] == [2, 1]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x).softmax(1)[:, REAL], torch.sigmoid(net((x - 0.5) / 0.5)).squeeze(1), atol=1e-5)


def test_timm_missing_is_a_one_line_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    card = write_card(tmp_path / "t.toml", source="timm:xception41", normalization="imagenet", output="logits", fake_index=1)
    with pytest.raises(DfrobustError, match=r"pip install 'dfrobust\[timm\]'"):
        load_card(card)


def test_dfrobust_source_card(toy_model: Path, tmp_path: Path) -> None:
    card = write_card(tmp_path / "own.toml", source=f"dfrobust:{toy_model}")
    model, meta = load_card(card)
    assert meta["input_size"] == [32, 32]
    plain, _ = load_model_arg(toy_model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-6)


def test_weight_mismatch_lists_keys_and_names_shapes(tmp_path: Path) -> None:
    net = torchvision.models.resnet18(num_classes=2)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pth")
    keys = {
        "source": "torchvision:resnet18",
        "weights": "w.pth",
        "normalization": "none",
        "output": "logits",
        "fake_index": 0,
        "input_size": [16, 16],
    }
    with pytest.raises(DfrobustError, match=r"2 missing key\(s\) \(fc.weight, fc.bias\), 1 unexpected key\(s\) \(extra.weight\)"):
        load_card(write_card(tmp_path / "a.toml", **keys))
    model, meta = load_card(write_card(tmp_path / "b.toml", **keys, strict=False))  # non-strict: loads what fits
    assert meta["missing_keys"] == ["fc.weight", "fc.bias"] and meta["unexpected_keys"] == ["extra.weight"]
    assert torch.equal(model.model.conv1.weight, state["conv1.weight"])
    wide = torchvision.models.resnet18(num_classes=5).state_dict()
    torch.save(wide, tmp_path / "w5.pth")
    with pytest.raises(DfrobustError, match=r"shapes differ for fc.weight \(file \[5, 512\], model \[2, 512\]\)"):
        load_card(write_card(tmp_path / "c.toml", **{**keys, "weights": "w5.pth"}))
    # a training checkpoint with DataParallel prefixes is unwrapped
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "ckpt.pth")
    load_card(write_card(tmp_path / "d.toml", **{**keys, "weights": "ckpt.pth"}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('source = "torchvision:resnet18"\nnormalization = "none"\noutput = "logits"\nfake_index = 0\ncolour = 1\n', "unknown key"),
        ('source = "torchvision:resnet18"\noutput = "logits"\n', "missing key.*normalization, fake_index"),
        ('source = "torchvision:resnet18"\nnormalization = "none"\noutput = "logits"\nfake_index = "1"\n', "`fake_index` must be"),
        ('source = "torchvision:resnet18"\nnormalization = "none"\noutput = "scores"\nfake_index = 0\n', "`output` must be"),
        ('source = "onnx:x.onnx"\nnormalization = "none"\noutput = "logits"\nfake_index = 0\n', "unknown source kind"),
        ('source = "torchvision:resnet18"\nnormalization = "none"\noutput = "logits"\nfake_index = 0\ninput_size = 224\n', "`input_size`"),
        ('source = "torchvision:resnet18"\nnormalization = {mean = [0.5]}\noutput = "logits"\nfake_index = 0\n', "`normalization`"),
        ('source = "python:no_such_module_xyz:build"\nnormalization = "none"\noutput = "logit"\nfake_index = 1\n', "cannot import"),
        ("source = [\n", "not valid TOML"),
    ],
)
def test_bad_cards_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    card = tmp_path / "bad.toml"
    card.write_text(text)
    with pytest.raises(DfrobustError, match=message) as info:
        load_card(card)
    assert "\n" not in str(info.value) and "bad.toml" in str(info.value)


def test_probe_catches_a_wrong_output_kind(user_detector: dict[str, Path], tmp_path: Path) -> None:
    text = (
        user_detector["card"]
        .read_text()
        .replace('output = "logit"', 'output = "logits"')
        .replace("weights.pth", str(user_detector["weights"]))
    )
    card = tmp_path / "wrong.toml"
    card.write_text(text)
    with pytest.raises(DfrobustError, match='set the card\'s `output` key to "logit"'):
        load_card(card)
    assert read_card(card).output == "logits"  # the card itself parses: only the probe can tell


class Rounded(nn.Module):
    """A detector whose input passes through rounding: zero gradient almost everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.round(x * 4).mean(dim=(2, 3)))


def test_card_check_prints_the_convention_and_warns_on_blocked_gradients(
    user_detector: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["card", "check", str(user_detector["card"]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for text in ("python:userdet_pkg.nets:build", "24x24 (resized inside)", "logit [2, 1]", "fake index 1", "input gradient"):
        assert text in out
    assert "warning" not in out
    module = type(sys)("rounded_det_mod")
    module.build = Rounded
    monkeypatch.setitem(sys.modules, "rounded_det_mod", module)
    card = write_card(tmp_path / "rounded.toml", source="python:rounded_det_mod:build", normalization="none", output="logits",
                      fake_index=0, input_size=[8, 8])  # fmt: skip
    assert main(["card", "check", str(card), "--device", "cpu"]) == 0
    assert "cannot be attacked by gradient methods" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["card", "check", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_evaluate_accepts_a_card(user_detector: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--data", str(user_detector["data"]), "--model", str(user_detector["card"]), "--workers", "0",
                 "--device", "cpu", "--json", str(tmp_path / "e.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "user-net" in out and "no splits: every image" in out
    result = json.loads((tmp_path / "e.json").read_text())["models"]["user-net"]
    assert result["kind"] == "card" and result["metrics"]["n"] == 16 and result["metrics"]["accuracy"] >= 0.9


def test_purify_accepts_a_card(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    card = write_card(tmp_path / "toy-card.toml", source=f"dfrobust:{toy_model}")
    adv = tmp_path / "fgsm"
    assert main(["attack", "--data", str(toy_dataset), "--source", str(card), "--attack", "fgsm", "--eps", "0.1",
                 "--device", "cpu", "--out", str(adv)]) == 0  # fmt: skip
    out = tmp_path / "dip"
    assert main(["purify", "--data", str(toy_dataset), "--model", str(card), "--adv", str(adv), "--out", str(out), "--device", "cpu",
                 "--per-category", "1", "--iterations", "6", "--classify-at", "4", "--record-every", "2", "--batch-size", "4",
                 "--no-transforms"]) == 0  # fmt: skip
    assert json.loads((out / "summary.json").read_text())["n_images"] >= 3
