"""Plug-ins are one file: a new attack or purifier module is found (package scan or entry point) and usable.

Each test writes the plug-in module on the fly, exactly as a user would, and edits nothing
else: the registries, ``dfrobust attack --help`` and the CLI flags must pick it up.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import torch

import dfrobust.attacks
import dfrobust.defenses
from dfrobust.attacks import Attack, attack_class, available_attacks, make_attack, register_attack
from dfrobust.attacks.base import ATTACKS
from dfrobust.cli import build_parser, command_modules, main
from dfrobust.commands.attack import attack_params
from dfrobust.commands.params import flag_kind
from dfrobust.defenses import available_purifiers, make_purifier, purifier_class, purifier_defaults
from dfrobust.defenses.base import PURIFIERS
from dfrobust.defenses.dip import DipConfig, dip_purify
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import read_csv
from dfrobust.utils.plugins import Registry, docstring_args, forget_discovery

NOISE = '''
import torch

from dfrobust.attacks import Attack, register_attack


@register_attack
class Noise(Attack):
    """Uniform random noise in the Linf ball (a baseline). Args: eps: Linf radius. seed: noise seed."""

    name = "noise"

    def __init__(self, eps: float = 0.02, seed: int = 0) -> None:
        self.eps = eps
        self.seed = seed

    def perturb(self, model, x, y):
        gen = torch.Generator().manual_seed(self.seed)
        delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * self.eps
        return (x + delta.to(x.device)).clamp(0, 1), {}
'''

POSTERIZE = '''
from dfrobust.defenses import Purifier, register_purifier


@register_purifier
class Posterize(Purifier):
    """Rounds every pixel to a few levels.

    Args:
        levels: grey levels per channel.
    """

    name = "posterize"

    def __init__(self, levels: int = 4) -> None:
        self.levels = levels

    def purify(self, x, seed=0):
        return (x * (self.levels - 1)).round() / (self.levels - 1)
'''

#: the tiny DIP generator of the DIP tests: the real code path at a fraction of the cost
SMALL_DIP = {"channels_down": (4, 8), "channels_up": (4, 8), "channels_skip": (0, 2), "input_channels": 6}


@pytest.fixture
def registries() -> Iterator[None]:
    """Restore both registries, the discovery cache and sys.modules after a test that adds plug-ins."""
    # discovered before the snapshot: an imported module does not register again
    saved = {reg: reg.classes() for reg in (ATTACKS, PURIFIERS)}
    modules = set(sys.modules)
    forget_discovery()
    yield
    for reg, entries in saved.items():
        reg.entries.clear()
        reg.entries.update(entries)
    for name in set(sys.modules) - modules:
        if name.startswith(("dfr_ext_", "dfrobust.attacks.noise", "dfrobust.defenses.posterize")):
            del sys.modules[name]
    forget_discovery()


def _in_package(monkeypatch: pytest.MonkeyPatch, package: object, folder: Path, name: str, source: str) -> None:
    """Put module ``name`` in a folder that ``package`` scans, as if the file were saved in the package."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])


def _entry_points(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, modules: dict[str, str], groups: dict[str, list[tuple[str, str]]]
) -> None:
    """Install third-party modules under ``tmp_path`` and fake their entry points ``{group: [(name, value)]}``."""
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))

    def fake(group: str | None = None, **_: object) -> list[importlib.metadata.EntryPoint]:
        return [importlib.metadata.EntryPoint(name=n, value=v, group=group) for n, v in groups.get(group or "", [])]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)


def test_an_attack_file_in_the_package_is_discovered(
    registries: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _in_package(monkeypatch, dfrobust.attacks, tmp_path / "attacks", "noise", NOISE)
    assert "noise" in available_attacks()
    assert attack_class("noise").__module__ == "dfrobust.attacks.noise"
    x, y = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 0])
    result = make_attack("noise", eps=0.05)(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2)), x, y)
    assert result.settings == {"attack": "noise", "eps": 0.05, "seed": 0}
    assert 0 < float(result.linf.max()) <= 0.05 + 1e-6
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines wherever the text falls
    assert re.search(r"--attack \{[a-z,-]*\bnoise\b", out) and "noise (Uniform random noise in the Linf ball" in out
    assert "noise: Linf radius" in out  # the shared --eps flag explains itself per attack


def test_a_third_party_attack_runs_from_the_cli(
    registries: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    toy_dataset: Path,
    toy_model: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _entry_points(monkeypatch, tmp_path, {"dfr_ext_noise": NOISE}, {"dfrobust.attacks": [("noise", "dfr_ext_noise")]})
    out = tmp_path / "noise-run"
    args = ["attack", "--data", str(toy_dataset), "--source", str(toy_model), "--attack", "noise", "--eps", "0.05",
            "--max-images", "4", "--seed", "3", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"] == {"label": "noise", "attack": "noise", "eps": 0.05, "seed": 3}  # --seed fills the attack's seed
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and {r["attack"] for r in rows} == {"noise"}
    assert max(float(r["linf"]) for r in rows) <= 0.05 + 0.5 / 255 + 1e-6  # the PNG's rounding on top of eps
    capsys.readouterr()
    assert main([*args[:-2], "--kappa", "5", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err  # cw and fmn both have --kappa
    assert "--kappa is a parameter of cw" in err and "not of attack noise" in err
    assert not (tmp_path / "x").exists()


def test_a_broken_entry_point_is_skipped_with_a_warning(
    registries: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _entry_points(monkeypatch, tmp_path, {}, {"dfrobust.attacks": [("broken", "dfr_ext_missing_module")]})
    with caplog.at_level(logging.WARNING, logger="dfrobust.utils.plugins"):
        assert {"cw", "fgsm", "pgd"} <= set(available_attacks())
    assert "'broken'" in caplog.text and "dfr_ext_missing_module" in caplog.text


def test_a_taken_name_is_refused(registries: None) -> None:
    fgsm = attack_class("fgsm")
    assert register_attack(fgsm) is fgsm  # the same class again (a reload) is fine

    class Other(Attack):
        name = "fgsm"

        def perturb(self, model, x, y):  # type: ignore[no-untyped-def]
            return x, {}

    with pytest.raises(DfrobustError, match="'fgsm' is taken"):
        register_attack(Other)
    assert attack_class("fgsm") is fgsm


def test_a_purifier_file_in_the_package_is_discovered(registries: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _in_package(monkeypatch, dfrobust.defenses, tmp_path / "defenses", "posterize", POSTERIZE)
    assert {"posterize", "jpeg", "blur", "dip", "identity"} <= set(available_purifiers())
    assert purifier_class("posterize").__module__ == "dfrobust.defenses.posterize"
    assert purifier_defaults("posterize") == {"levels": 4}
    purifier = make_purifier("posterize", levels=2)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    out = purifier(x)
    assert out.dtype == torch.float64 and set(out.unique().tolist()) <= {0.0, 1.0}
    assert purifier.settings == {"purifier": "posterize", "levels": 2} and not purifier.random
    with pytest.raises(DfrobustError, match="no parameter"):
        make_purifier("posterize", quality=3)


def test_a_third_party_purifier_comes_through_its_entry_point(registries: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _entry_points(monkeypatch, tmp_path, {"dfr_ext_posterize": POSTERIZE}, {"dfrobust.purifiers": [("posterize", "dfr_ext_posterize")]})
    assert purifier_class("posterize").__module__ == "dfr_ext_posterize"


def test_deterministic_purifiers_ignore_the_seed() -> None:
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(make_purifier("identity")(x, seed=5), x)
    for name in ("jpeg", "blur"):
        purifier = make_purifier(name)
        assert not purifier.random
        assert torch.equal(purifier(x, seed=0), purifier(x, seed=1))
    jpeg = make_purifier("jpeg", quality=50)(x)
    assert jpeg.shape == x.shape and torch.equal(jpeg, (jpeg * 255).round() / 255)  # 8-bit codec output


def test_blur_is_its_own_bpda_surrogate() -> None:
    blur = make_purifier("blur", sigma=0.8)
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    sur = blur.surrogate(x)
    assert sur is not None and torch.allclose(sur, blur(x), atol=1e-6)
    sur.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert make_purifier("jpeg").surrogate(x) is None and make_purifier("dip").surrogate(x) is None


def test_dip_draws_follow_the_seed_and_work_under_no_grad() -> None:
    dip = make_purifier("dip", iterations=4, classify_at=3, **SMALL_DIP)
    assert dip.random and dip.settings["classify_at"] == 3 and dip.settings["channels_down"] == [4, 8]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a, again, other = dip(x, seed=0), dip(x, seed=0), dip(x, seed=1)
        direct = dip_purify(x, DipConfig(iterations=4, **SMALL_DIP), seed=0, iteration=3)
    assert torch.equal(a, again) and torch.equal(a, direct.clamp(0, 1))
    assert (a - other).abs().amax() > 1e-3
    assert make_purifier("dip", iterations=10).classify_at == 6  # the paper's 60%
    with pytest.raises(DfrobustError, match="classify_at"):
        make_purifier("dip", iterations=10, classify_at=11)


def test_flags_follow_the_constructor_types() -> None:
    assert flag_kind(bool).boolean
    assert flag_kind(float | None).type is float
    assert flag_kind(Literal["a", "b"]).choices == ("a", "b")
    assert flag_kind(tuple[float, float]).nargs == 2
    assert flag_kind(tuple[int, ...]).nargs == "+"
    assert flag_kind(dict[str, int]) is None
    base = ["attack", "--data", "d", "--source", "s", "--out", "o", "--attack"]
    args = build_parser().parse_args([*base, "cw", "--no-abort-early", "--c-range", "1", "10", "--unreached", "max-margin"])
    assert attack_params(args) == {"abort_early": False, "c_range": (1.0, 10.0), "unreached": "max-margin"}
    args = build_parser().parse_args([*base, "pgd", "--norm", "l2", "--no-random-start", "--eps", "0.5"])
    assert attack_params(args) == {"norm": "l2", "random_start": False, "eps": 0.5}
    args = build_parser().parse_args([*base, "fgsm", "--steps", "3"])
    with pytest.raises(DfrobustError, match="--steps is a parameter of .*pgd, not of attack fgsm"):
        attack_params(args)


def test_docstring_args_read_google_style_sections() -> None:
    cw = docstring_args(attack_class("cw"))
    assert set(cw) == {"kappa", "c_range", "search_steps", "max_steps", "lr", "abort_early", "unreached"}
    assert cw["max_steps"].startswith("Adam steps per search step") and "Extras" not in cw["unreached"]

    class Inline:
        """One line. Args: eps: Linf radius. seed: noise seed."""

        def __init__(self, eps: float = 0.1, seed: int = 0) -> None: ...

    assert docstring_args(Inline) == {"eps": "Linf radius.", "seed": "noise seed."}


def test_commands_are_discovered_in_help_order() -> None:
    names = [m.__name__.rsplit(".", 1)[1] for m in command_modules()]
    known = ["data", "train", "evaluate", "attack", "purify", "report", "reproduce", "status"]
    assert [n for n in names if n in known] == known
    assert "common" not in names and "params" not in names


def test_a_registry_answers_to_a_class_s_own_aliases() -> None:
    """An alias finds its class, which keeps its one registered name; a name or alias taken by another class is refused."""
    reg: Registry[object] = Registry("widget", "dfrobust.attacks", "dfrobust.test_no_widgets")

    @reg.register
    class Wide:
        name = "wide"
        aliases = ("broad",)

    @reg.register
    class Narrower(Wide):  # a subclass answers to its own name only
        name = "narrower"

    assert reg.canonical("broad") == "wide" and reg.get("broad") is Wide and reg.names() == ["narrower", "wide"]
    assert reg.canonical("narrower") == "narrower" and reg.canonical("nosuch") == "nosuch"
    with pytest.raises(DfrobustError, match="unknown widget 'nosuch'"):
        reg.get("nosuch")
    for clash in ({"name": "broad"}, {"name": "other", "aliases": ("wide",)}):
        with pytest.raises(DfrobustError, match="is taken"):
            reg.register(type("Clash", (), clash))
