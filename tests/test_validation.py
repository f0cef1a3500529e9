"""Bad input is a one-line error before any work starts, and damaged files are caught (issue 17)."""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import pytest

from dfrobust.cli import main
from dfrobust.data.dataset import load_split
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector
from dfrobust.utils.io import read_json, write_json


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--eval-batch-size", "0"], "--eval-batch-size"),
        (["--momentum", "-1"], "--momentum"),
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--arch", "vit_b_16"], "vit_b_16 is not supported"),
        (["--arch", "googlenet"], "googlenet is not supported"),
    ],
)
def test_train_options_are_checked_before_work(
    flags: list[str], needle: str, toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.safetensors"
    args = ["train", "--data", str(toy_dataset), "--arch", "tiny", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    assert main(args + flags) == 2
    _one_line_error(capsys, needle)
    assert list(tmp_path.iterdir()) == []  # nothing started: no partial state, no model


def test_evaluate_batch_size_zero(toy_dataset: Path, toy_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--data", str(toy_dataset), "--model", str(toy_model), "--batch-size", "0"]) == 2
    _one_line_error(capsys, "--batch-size must be")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("dip.classify_at=999", "dip.classify_at = 999 lies after the last DIP iteration"),
        ("attack.cw.c_range=[5.0]", "attack.cw.c_range = [5.0] needs two numbers"),
        ("train.lr=nan", "train.lr = nan"),
        ("train.vgg16.momentum=-1.0", "train.vgg16.momentum = -1.0"),
        ("dip.es_window=1", "dip.es_window = 1"),
        ("dip.es_patience=0", "dip.es_patience = 0"),
        ("dip.early_stop=1", "dip.early_stop expects bool"),
        ("dip.levels=6", "dip.levels = 6 needs a whole number of levels from 1 to 5"),
        ("dip.levels=0", "dip.levels = 0 needs a whole number of levels from 1 to 5"),
    ],
)
def test_study_config_is_checked_before_the_first_stage(
    override: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_stage(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stage started on an invalid config")

    monkeypatch.setattr("dfrobust.pipeline.reproduce", no_stage)
    assert main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "run"), "--set", override]) == 2
    _one_line_error(capsys, needle)


SHIPPED_PRESETS = ("cpu", "paper", "quick", "tiny")


def test_every_shipped_preset_passes_the_checks() -> None:
    """Each preset shipped in src/dfrobust/presets validates (returns None) and resolves its own name;
    the list is stated here, so a preset that disappears or fails to load fails the test instead of
    leaving a loop over nothing."""
    from dfrobust.attacks.base import attack_param_checks
    from dfrobust.config import available_presets, study_config
    from dfrobust.config_checks import validate_study_config

    assert set(SHIPPED_PRESETS) <= set(available_presets())
    for preset in SHIPPED_PRESETS:
        cfg = study_config(preset)
        assert validate_study_config(cfg, attack_param_checks()) is None
        assert cfg["run"]["preset"] == preset and cfg["attack"]["attacks"], preset


def test_the_preset_check_rejects_a_broken_preset() -> None:
    """The check the loop above relies on does reject a preset with a bad value."""
    from dfrobust.config import study_config
    from dfrobust.config_checks import validate_study_config

    cfg = study_config("tiny")
    cfg["dip"]["classify_at"] = int(cfg["dip"]["iterations"]) + 5
    with pytest.raises(DfrobustError):
        validate_study_config(cfg)


def test_a_purifier_s_adaptive_settings_are_checked_and_override_the_common_ones() -> None:
    from dfrobust.config import study_config
    from dfrobust.config_checks import validate_study_config
    from dfrobust.kinds.adaptive import purifier_settings

    cfg = study_config("quick")
    dip, jpeg = purifier_settings(cfg["adaptive"], "dip"), purifier_settings(cfg["adaptive"], "jpeg")
    assert (dip["bpda"], dip["steps"], dip["attack_iterations"]) == ("fitted-blur", 3, 100)
    assert (jpeg["bpda"], jpeg["steps"]) == ("identity", 5) and "attack_iterations" not in jpeg
    cfg["adaptive"]["dip"]["steps"] = 0
    with pytest.raises(DfrobustError, match="adaptive.dip.steps"):
        validate_study_config(cfg)
    cfg["adaptive"]["dip"] = {"stepz": 3}
    with pytest.raises(DfrobustError, match="not a setting of an adaptive attack"):
        validate_study_config(cfg)


def test_fgsm_warns_above_a_sane_eps(caplog: pytest.LogCaptureFixture) -> None:
    from dfrobust.attacks import make_attack

    with caplog.at_level(logging.WARNING, logger="dfrobust"):
        make_attack("fgsm", eps=0.05)
        assert not caplog.records
        make_attack("fgsm", eps=0.5)
    assert any("--eps 0.5" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    with pytest.raises(DfrobustError, match="more than 1"):  # above the whole pixel range: 0-255 units by mistake
        make_attack("fgsm", eps=2.0)


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


@pytest.mark.parametrize("key", ["arch", "input_size"])
def test_a_sidecar_without_arch_or_input_size_is_one_line(
    key: str, toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _copy_model(toy_model, tmp_path / "m.safetensors")
    side = read_json(model.with_suffix(".json"))
    del side[key]
    write_json(model.with_suffix(".json"), side)
    assert main(["evaluate", "--data", str(toy_dataset), "--model", str(model)]) == 2
    _one_line_error(capsys, f"has no {key!r}" if key == "arch" else "has no valid 'input_size'")


def test_invalid_json_in_a_sidecar_or_a_manifest_is_one_line(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _copy_model(toy_model, tmp_path / "m.safetensors")
    model.with_suffix(".json").write_text("{not json")
    assert main(["evaluate", "--data", str(toy_dataset), "--model", str(model)]) == 2
    _one_line_error(capsys, "m.json is not valid JSON")
    data = shutil.copytree(toy_dataset, tmp_path / "data")
    (data / "manifest.json").write_text('{"images": [')
    assert main(["evaluate", "--data", str(data), "--model", str(toy_model)]) == 2
    _one_line_error(capsys, "manifest.json is not valid JSON")


def test_sidecar_must_describe_the_weights(toy_model: Path, tmp_path: Path) -> None:
    model = _copy_model(toy_model, tmp_path / "m.safetensors")
    side = read_json(model.with_suffix(".json"))
    assert len(side["weights_sha256"]) == 64  # recorded when saved
    write_json(model.with_suffix(".json"), {**side, "normalization": "imagenet"})
    with pytest.raises(DfrobustError, match="says normalization 'imagenet' but the weights .* were saved with 'none'"):
        load_detector(model)
    write_json(model.with_suffix(".json"), {**side, "weights_sha256": "0" * 64})
    with pytest.raises(DfrobustError, match="does not match the weights_sha256"):
        load_detector(model)


def _edit_manifest(data: Path, edit) -> None:  # noqa: ANN001 - a one-off callback
    manifest = json.loads((data / "manifest.json").read_text())
    edit(manifest["images"])
    (data / "manifest.json").write_text(json.dumps(manifest))


def test_image_hashes_are_verified(toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = shutil.copytree(toy_dataset, tmp_path / "data")
    assert main(["data", "verify", str(data)]) == 0
    assert "all 96 images match" in capsys.readouterr().out
    assert len(load_split(data, "test")) == 48  # and the cache of checked files is written
    first = next(r for r in json.loads((data / "manifest.json").read_text())["images"] if r["split"] == "test")

    def zero(images: list[dict]) -> None:
        images[[r["path"] for r in images].index(first["path"])]["sha256"] = "0" * 64

    _edit_manifest(data, zero)
    with pytest.raises(DfrobustError, match=f"{first['path']}: its sha256 differs from"):
        load_split(data, "test")
    assert main(["data", "verify", str(data)]) == 2
    captured = capsys.readouterr()
    assert f"{first['path']}: sha256 differs from the manifest" in captured.out and "1 of 96 images" in captured.err


def test_a_changed_image_is_caught_although_the_manifest_is_intact(toy_dataset: Path, tmp_path: Path) -> None:
    data = shutil.copytree(toy_dataset, tmp_path / "data")
    load_split(data, "train")  # checked once: the cache now skips unchanged files
    target = sorted((data / "fake").glob("*.png"))[0]
    shutil.copy(sorted((data / "real").glob("*.png"))[0], target)
    with pytest.raises(DfrobustError, match="its sha256 differs"):
        load_split(data, None)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda images: images[0].update(path="../../../etc/hostname"), "outside the dataset folder"),
        (lambda images: images[0].update(path="/etc/hostname"), "outside the dataset folder"),
        (lambda images: images[0].update(split="validation"), "has split 'validation'"),
    ],
)
def test_manifest_records_are_checked(edit, needle: str, toy_dataset: Path, tmp_path: Path) -> None:  # noqa: ANN001
    data = shutil.copytree(toy_dataset, tmp_path / "data")
    _edit_manifest(data, edit)
    with pytest.raises(DfrobustError, match=needle):
        load_split(data, None)


@pytest.mark.parametrize(("code", "needle"), [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system")])
def test_a_full_disk_or_read_only_folder_is_one_line(
    code: int, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("dfrobust.utils.io.os.replace", fail)
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "16", "--size", "16"]) == 2
    _one_line_error(capsys, f"{needle} while writing", "rerun the same command")


def test_set_reaches_every_parameter_of_a_registered_attack() -> None:
    """``--set attack.X.key=value`` works for an attack without a preset section, typed by the constructor's default."""
    from dfrobust.attacks.base import attack_defaults, attack_section_defaults
    from dfrobust.config import study_config

    assert "pgd" not in study_config("tiny")["attack"]
    cfg = study_config("tiny", ["attack.pgd.steps=3", 'attack.pgd.norm="l2"', "attack.mifgsm.steps=3"], attack_section_defaults)
    assert cfg["attack"]["pgd"] == {"steps": 3, "norm": "l2"} and cfg["attack"]["mifgsm"]["steps"] == 3
    assert "step_size" in attack_defaults("pgd")
    for bad, says in (("attack.pgd.nokey=1", "step_size"), ("attack.nosuch.eps=1", "no section"), ('attack.pgd.steps="x"', "expects int")):
        with pytest.raises(DfrobustError, match=says):
            study_config("tiny", [bad], attack_section_defaults)


def test_a_bad_attack_parameter_fails_at_planning(tmp_path: Path) -> None:
    """The attack's own constructor checks a preset's value before any stage runs."""
    from dfrobust.attacks.base import attack_section_defaults
    from dfrobust.config import study_config
    from dfrobust.pipeline import plan_study

    cfg = study_config("tiny", ["attack.fgsm.eps=-1.0"], attack_section_defaults)
    with pytest.raises(DfrobustError, match="eps"):
        plan_study(cfg, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_an_attack_has_one_name_and_a_config_may_use_its_alias(tmp_path: Path) -> None:
    """``dimifgsm`` names DI-MI-FGSM in configs, results and the report; ``di-mifgsm`` (its old result label) is
    accepted in a preset and in ``--set``, and the config names it ``dimifgsm``."""
    from dfrobust.attacks.base import ATTACKS, attack_display, attack_section_defaults
    from dfrobust.cli import build_parser
    from dfrobust.commands.reproduce import resolve_run
    from dfrobust.config import study_config
    from dfrobust.kinds.attack import attack_plan

    assert ATTACKS.canonical("di-mifgsm") == "dimifgsm" and "di-mifgsm" not in ATTACKS.names()
    assert attack_display("dimifgsm") == attack_display("di-mifgsm") == "DI-MI-FGSM"  # rows of older runs still print so
    preset = tmp_path / "mine.toml"
    preset.write_text('extends = "tiny"\n[attack]\nattacks = ["fgsm", "di-mifgsm"]\n[attack.di-mifgsm]\nsteps = 3\n')
    cfg = study_config(str(preset), ["attack.di-mifgsm.decay=0.5"], attack_section_defaults, ATTACKS.canonical)
    assert cfg["attack"]["attacks"] == ["fgsm", "dimifgsm"] and "di-mifgsm" not in cfg["attack"]
    assert cfg["attack"]["dimifgsm"]["steps"] == 3 and cfg["attack"]["dimifgsm"]["decay"] == 0.5
    assert {r.attack for r in attack_plan(cfg)} == {"fgsm", "dimifgsm"}
    cfg = study_config(
        "tiny", ['attack.attacks=["di-mifgsm"]', 'attack.ensemble=["di-mifgsm"]'], attack_section_defaults, ATTACKS.canonical
    )
    assert cfg["attack"]["attacks"] == cfg["attack"]["ensemble"] == ["dimifgsm"]
    args = build_parser().parse_args(
        ["reproduce", "--preset", "tiny", "--run", str(tmp_path / "run"), "--set", 'attack.attacks=["di-mifgsm"]']
    )
    assert resolve_run(args)[1]["attack"]["attacks"] == ["dimifgsm"]  # what `dfrobust reproduce` plans


@pytest.mark.parametrize(
    ("attack", "key", "bad", "says"),
    [
        ("cw", "kappa", -1.0, "needs a finite number in [0, inf)"),
        ("cw", "c_range", [5.0, 1.0], "needs two numbers [LO, HI] with 0 < LO <= HI"),
        ("cw", "unreached", "never", "must be one of 'min-l2', 'max-margin'"),
        ("pgd", "steps", 0, "needs a whole number >= 1"),
        ("pgd", "norm", "l1", "must be one of 'linf', 'l2'"),
        ("fgsm", "eps", 8.0, "is more than 1"),
        ("apgd", "rho", 0.0, "needs a finite number in (0, 1]"),
        ("square", "p_init", 2.0, "needs a finite number in (0, 1]"),
        ("mifgsm", "di_prob", 1.5, "needs a finite number in [0, 1]"),
        ("dimifgsm", "decay", -0.5, "needs a finite number in [0, inf)"),
        ("fmn", "gamma_init", 1.0, "needs a finite number in (0, 1)"),
    ],
)
def test_one_declared_constraint_rejects_a_bad_value_everywhere(attack: str, key: str, bad: object, says: str) -> None:
    """The constraint an attack declares in ``params`` is the one check of its constructor, of ``--set`` (through the
    config's validation) and of the config: the same problem text, on one line naming the key."""
    import json
    import re

    from dfrobust.attacks import make_attack
    from dfrobust.attacks.base import attack_param_checks, attack_section_defaults
    from dfrobust.config import study_config
    from dfrobust.config_checks import validate_study_config

    with pytest.raises(DfrobustError, match=re.escape(f"{attack}: {key} (--{key.replace('_', '-')}) = {bad!r} {says}")) as err:
        make_attack(attack, **{key: bad})
    assert "\n" not in str(err.value)
    cfg = study_config("tiny", [f"attack.{attack}.{key}={json.dumps(bad)}"], attack_section_defaults)
    validate_study_config(cfg)  # without the plug-ins' constraints the attack's section is not checked here
    with pytest.raises(
        DfrobustError, match=re.escape(f"config attack.{attack}.{key} = {bad!r} {says}") + ".*; change it with --set"
    ) as err:
        validate_study_config(cfg, attack_param_checks())
    assert "\n" not in str(err.value)


def test_a_constraint_may_read_another_parameter_and_the_config_reads_the_default() -> None:
    """PGD's budget is checked by its norm: 2.0 is too big for Linf (the default norm) but a fine L2 radius."""
    from dfrobust.attacks import make_attack
    from dfrobust.attacks.base import attack_param_checks, attack_section_defaults
    from dfrobust.config import study_config
    from dfrobust.config_checks import validate_study_config

    assert make_attack("pgd", eps=2.0, norm="l2").eps == 2.0
    with pytest.raises(DfrobustError, match="more than 1"):
        make_attack("pgd", eps=2.0)
    ok = study_config("tiny", ["attack.pgd.eps=2.0", 'attack.pgd.norm="l2"'], attack_section_defaults)
    assert validate_study_config(ok, attack_param_checks()) is None
    bad = study_config("tiny", ["attack.pgd.eps=2.0"], attack_section_defaults)
    with pytest.raises(DfrobustError, match="config attack.pgd.eps = 2.0 is more than 1"):
        validate_study_config(bad, attack_param_checks())
    bad = study_config("tiny", ["attack.cw.max_images=-1"], attack_section_defaults)
    with pytest.raises(DfrobustError, match="config attack.cw.max_images = -1 needs a whole number >= 0"):
        validate_study_config(bad, attack_param_checks())


def test_every_attack_declares_a_constraint_for_each_parameter_but_its_seed() -> None:
    """The config's per-attack keys come from the classes: every parameter of every built-in attack is covered."""
    from dfrobust.attacks.base import attack_classes
    from dfrobust.utils.plugins import constructor_parameters, declared_params

    for name in ("fgsm", "pgd", "apgd", "cw", "square", "mifgsm", "dimifgsm", "fmn"):
        cls = attack_classes()[name]
        missing = set(constructor_parameters(cls)) - set(declared_params(cls)) - {"seed"}
        assert not missing, (name, missing)


def test_a_shipped_preset_does_not_repeat_an_attack_s_default() -> None:
    """Defaults live in the signatures: a preset's ``[attack.NAME]`` states only what differs, except the paper's own
    attacks in ``paper.toml``, whose values are the paper's numbers (the report's differences compare against them)."""
    import tomllib
    from importlib.resources import files

    from dfrobust.attacks.base import ATTACKS, make_attack, paper_attacks
    from dfrobust.config_checks import ATTACK_STAGE_KEYS

    for preset in SHIPPED_PRESETS:
        raw = tomllib.loads(files("dfrobust.presets").joinpath(f"{preset}.toml").read_text())
        for name, section in (raw.get("attack") or {}).items():
            if not isinstance(section, dict) or (preset == "paper" and ATTACKS.canonical(name) in paper_attacks()):
                continue
            default = make_attack(name).settings
            for key, value in section.items():
                if key not in ATTACK_STAGE_KEYS:  # the attack stage's own keys (max_images, survivors_of) are no parameters
                    assert make_attack(name, **{key: value}).settings != default, f"{preset}.toml repeats {name}'s default {key}"
