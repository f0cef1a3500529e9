"""The Python API for torchattacks/ART habits: wrap_detector, label conventions, the eps > 1 error,
adversarial_images, a card's python: module found in the card's folder, and the README's side-by-side."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch.nn import functional as F

from dfrobust import adversarial_images, make_attack, wrap_detector
from dfrobust.constants import FAKE, REAL
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.robustness import ThreatModel
from dfrobust.models.cards import card_identity, load_card
from dfrobust.models.detectors import IMAGENET_MEAN, IMAGENET_STD
from dfrobust.utils.labels import to_dfrobust_labels

ROOT = Path(__file__).resolve().parents[1]


def _net(num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=num_classes)


@pytest.fixture(scope="module")
def one_logit() -> torch.nn.Module:
    """A random-init torchvision resnet18 with one logit (sigmoid = P(fake)), wrapped at 32 px."""
    return wrap_detector(_net(1), output="logit", fake_index=1, input_size=32)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(1))


def _one_line(exc: pytest.ExceptionInfo[DfrobustError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_wrap_a_one_logit_resnet18(one_logit: torch.nn.Module, images: torch.Tensor) -> None:
    out = one_logit(images)
    assert out.shape == (6, 2) and not one_logit.training
    raw = one_logit.model(F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True))
    assert torch.allclose(out.softmax(1)[:, FAKE], torch.sigmoid(raw).squeeze(1), atol=1e-6)
    # the same model named by its real side, and the opposite reading of its logit
    by_real = wrap_detector(one_logit.model, output="logit", real_index=0, input_size=(32, 32))
    assert torch.allclose(by_real(images), out)
    flipped = wrap_detector(one_logit.model, output="logit", fake_index=0, input_size=32)
    assert torch.allclose(flipped(images).softmax(1)[:, REAL], out.softmax(1)[:, FAKE], atol=1e-6)


def test_wrap_a_1000_class_model_with_fake_index(images: torch.Tensor) -> None:
    net = _net(1000)
    model = wrap_detector(net, fake_index=7, input_size=32, normalization="imagenet")
    x = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    raw = net((x - mean) / std)
    out = model(images)
    assert out.shape == (6, 2)
    assert torch.allclose(out.softmax(1)[:, FAKE], raw.softmax(1)[:, 7], atol=1e-5)  # fake against all the other classes
    # mean/std as arguments equal the named normalisation; two columns compare only those two
    same = wrap_detector(net, fake_index=7, input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert torch.allclose(same(images), out)
    pair = wrap_detector(net, fake_index=7, real_index=3, input_size=32, normalization="imagenet")
    assert torch.allclose(pair(images), raw[:, [7, 3]], atol=1e-5)
    with pytest.raises(DfrobustError, match="1000 columns but `fake_index` is 1000") as info:
        wrap_detector(net, fake_index=1000, input_size=32)  # the probe at wrap time, not inside an attack
    _one_line(info)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"output": "logits"}, "say which output means fake"),
        ({"output": "scores", "fake_index": 0}, "`output` must be one of"),
        ({"output": "logit", "fake_index": 2}, 'with output = "logit"'),
        ({"output": "logit", "fake_index": 1, "real_index": 1}, "contradict"),
        ({"fake_index": 0, "input_size": 0}, "`input_size`"),
        ({"fake_index": 0, "mean": [0.5, 0.5, 0.5]}, "`mean` and `std` together"),
        ({"fake_index": 0, "normalization": {"mean": [0.5], "std": [0.0]}}, "`normalization`"),
        ({"output": "logits", "fake_index": 0}, "wrap_detector's `output` argument"),  # one logit declared as N x C
    ],
)
def test_wrap_detector_errors_are_one_line(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(DfrobustError, match=re.escape(says)) as info:
        wrap_detector(_net(1), **{"input_size": 32, **kwargs})
    _one_line(info)
    with pytest.raises(DfrobustError, match="torch.nn.Module"):
        wrap_detector(lambda x: x, fake_index=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 1000])
def test_pgd_reads_labels_in_either_convention(size: int, images: torch.Tensor) -> None:
    net = _net(size)
    if size > 1:  # a random 1000-class net gives class 7 about 1/1000: move its bias to the fake/real boundary
        with torch.no_grad():
            raw = net(F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True))
            net.fc.bias[7] += (torch.cat([raw[:, :7], raw[:, 8:]], 1).logsumexp(1) - raw[:, 7]).median()
    model = wrap_detector(net, output="logit" if size == 1 else "logits", fake_index=1 if size == 1 else 7, input_size=32)
    with torch.no_grad():
        y = model(images).argmax(1)  # dfrobust's labels: the model is right on every image
    attack = make_attack("pgd", eps=8 / 255, steps=10)
    ours = attack(model, images, y)
    theirs = attack(model, images, 1 - y, labels="fake=1")  # DeepfakeBench's / CNNDetection's labels, the same images
    assert torch.equal(ours.x_adv, theirs.x_adv) and torch.equal(ours.success, theirs.success)
    assert torch.equal(attack(model, images, (1 - y).tolist(), labels="real=0").x_adv, ours.x_adv)  # a list, named by real
    # the attack went away from the true class; read in the wrong convention, the same labels push towards it
    wrong = attack(model, images, 1 - y)
    with torch.no_grad():
        before, after, towards = (F.cross_entropy(model(v), y) for v in (images, ours.x_adv, wrong.x_adv))
        assert torch.equal(ours.success, model(ours.x_adv).argmax(1) != y)
    assert after > before > towards
    assert float(ours.linf.max()) <= 8 / 255 + 1e-6
    if size == 1:  # the one-logit net is sensitive enough at 8/255 to flip (a random 1000-class one is not)
        assert ours.success.any()


@pytest.mark.parametrize(
    ("y", "labels", "says"),
    [
        (torch.tensor([0, 1, 2, 1, 0, 1]), "fake=0", "labels hold 2 besides 0 and 1"),
        (torch.zeros(6, 1, dtype=torch.long), "fake=0", "shape (6,), got shape (6, 1)"),
        (torch.zeros(5, dtype=torch.long), "fake=1", "shape (6,), got shape (5,)"),
        (torch.full((6,), 0.5), "fake=0", "fractional"),
        (torch.zeros(6, dtype=torch.long), "fake=2", "not a label convention"),
        (None, "deepfakebench", "not a label convention"),
    ],
)
def test_labels_that_cannot_be_read_are_one_line_errors(
    one_logit: torch.nn.Module, images: torch.Tensor, y: torch.Tensor | None, labels: str, says: str
) -> None:
    with pytest.raises(DfrobustError, match=re.escape(says)) as info:
        make_attack("fgsm", eps=0.02)(one_logit, images, y, labels=labels)
    _one_line(info)


def test_the_torchattacks_shape_of_make_attack_says_where_the_model_goes(one_logit: torch.nn.Module) -> None:
    with pytest.raises(DfrobustError, match=re.escape("got a model: it takes parameters by keyword and the model at call time")) as info:
        make_attack("pgd", one_logit, eps=8 / 255)
    _one_line(info)


def test_label_conversion() -> None:
    assert to_dfrobust_labels([1, 0, 1], "fake=1").tolist() == [0, 1, 0]
    assert to_dfrobust_labels(np.array([1.0, 0.0]), "real=1").tolist() == [1, 0]
    assert to_dfrobust_labels(torch.tensor([True, False]), "fake=0").dtype == torch.long


@pytest.mark.parametrize("name", ["fgsm", "pgd", "mifgsm", "apgd", "square"])
def test_eps_above_one_is_an_error_that_says_255(name: str) -> None:
    with pytest.raises(DfrobustError, match=re.escape("more than 1, the whole [0, 1] pixel range")) as info:
        make_attack(name, eps=8)
    assert "8/255 = 0.03137" in _one_line(info)
    with pytest.raises(DfrobustError, match="finite number >= 0"):
        make_attack(name, eps=-0.1)
    assert make_attack(name, eps=8 / 255).eps == pytest.approx(8 / 255)


def test_eps_above_one_is_fine_for_l2_and_refused_for_a_linf_threat_model() -> None:
    assert make_attack("pgd", norm="l2", eps=2.0).eps == 2.0  # an L2 radius over all pixels may exceed 1
    with pytest.raises(DfrobustError, match="more than 1"):
        ThreatModel(norm="linf", eps=8)
    assert ThreatModel(norm="l2", eps=2.0).eps == 2.0


def test_adversarial_images_returns_just_the_images(one_logit: torch.nn.Module, images: torch.Tensor) -> None:
    y = torch.tensor([1, 0, 1, 0, 1, 0])  # fake = 1
    adv = adversarial_images("pgd", one_logit, images, y, labels="fake=1", eps=8 / 255, steps=3)
    result = make_attack("pgd", eps=8 / 255, steps=3)(one_logit, images, 1 - y)
    assert isinstance(adv, torch.Tensor) and torch.equal(adv, result.x_adv)
    assert one_logit(adv).shape == (6, 2)  # usable directly
    built = make_attack("fgsm", eps=0.02)
    with torch.no_grad():
        own = one_logit(images).argmax(1)
    assert torch.equal(adversarial_images(built, one_logit, images), built(one_logit, images, own).x_adv)  # no labels: its predictions
    with pytest.raises(DfrobustError, match="already built"):
        adversarial_images(built, one_logit, images, eps=0.1)


USER_MODULE = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, {classes})

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def build():
    return Net()
"""


def _card_with_module(folder: Path, module: str, classes: int) -> Path:
    folder.mkdir(parents=True)
    (folder / f"{module}.py").write_text(USER_MODULE.format(classes=classes))
    card = folder / "det.toml"
    card.write_text(f'source = "python:{module}:build"\nnormalization = "none"\noutput = "logits"\nfake_index = 0\ninput_size = [8, 8]\n')
    return card


def test_a_cards_python_module_is_found_in_the_cards_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = "dfr_card_rel_mod"
    card = _card_with_module(tmp_path / "cards" / "a", module, 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the working directory nor PYTHONPATH holds the module
    path_before = list(sys.path)
    try:
        _load_relative(card, module, tmp_path, path_before)
    finally:
        sys.modules.pop(module, None)


def _load_relative(card: Path, module: str, tmp_path: Path, path_before: list[str]) -> None:
    identity = card_identity(card)
    model, meta = load_card(card)
    assert Path(sys.modules[module].__file__).parent == card.parent.resolve()
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 2) and meta["source"] == f"python:{module}:build"
    assert sys.path == path_before  # the card's folder is on the path only while its module is imported
    # the cache key follows the module's code, found in the card's folder as well
    (card.parent / f"{module}.py").write_text(USER_MODULE.format(classes=2) + "\n# edited\n")
    assert card_identity(card) != identity
    # another card's module of the same name cannot silently reuse the first one
    other = _card_with_module(tmp_path / "cards" / "b", module, 3)
    with pytest.raises(DfrobustError, match="already imported from") as info:
        load_card(other)
    assert str(card.parent.resolve()) in _one_line(info)


def test_readme_shows_the_torchattacks_way_and_runs_the_dfrobust_way() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    assert "torchattacks.PGD(" in section
    block = re.search(r"The dfrobust way.*?```python\n(.*?)```", section, re.S).group(1)
    scope: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the documented example itself
    adv = scope["adv"]
    assert isinstance(adv, torch.Tensor) and adv.shape == (4, 3, 64, 64)


def test_card_help_says_a_cards_module_is_code_that_runs_found_in_its_folder(capsys: pytest.CaptureFixture[str]) -> None:
    from dfrobust.cli import main

    for argv in (["card", "--help"], ["card", "check", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert "A python: source is code that runs" in out and "found in the card's folder first" in out
        assert "dfrobust.wrap_detector(" in out
