"""Survivors-only attack runs (AutoAttack's chain): skipped rows, robust accuracy over them, resume, fingerprints, n."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

import dfrobust.studies.attack_run as experiment
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.masking import check_gradient_free_vs_gradient
from dfrobust.evaluate.robustness import ThreatModel, robust_accuracy, robust_accuracy_by_target
from dfrobust.models.checkpoint import load_detector, save_detector
from dfrobust.studies.attack_run import AttackConfig, run_attack
from dfrobust.studies.attack_tables import table2_counts, table2_rows, target_aggregates
from dfrobust.utils.io import read_csv

#: A radius at which the toy detector's APGD fools some of the 10 fakes, not all (checked by the first test).
EPS = 0.08
APGD = AttackConfig("apgd", {"eps": EPS, "steps": 3}, batch_size=4, max_images=10, device="cpu")
SQUARE = AttackConfig("square", {"eps": EPS, "queries": 20}, batch_size=4, max_images=10, device="cpu")
TM = ThreatModel("linf", EPS)
BUDGETS = {"apgd-ce-linf": ("linf", EPS), "square-linf": ("linf", EPS)}


def _rows_without_time(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(path)]


@pytest.fixture(scope="module")
def models(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The toy detector as ``tiny-a`` and a noisy copy as ``tiny-b`` (a transfer target)."""
    folder = tmp_path_factory.mktemp("chain-models")
    source = folder / "tiny-a.safetensors"
    shutil.copy(toy_model, source)
    shutil.copy(toy_model.with_suffix(".json"), source.with_suffix(".json"))
    model, _ = load_detector(toy_model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.2 * param.std().clamp_min(1e-3))
    return source, save_detector(model, folder / "tiny-b.safetensors", {"input_size": [32, 32]})


@pytest.fixture(scope="module")
def chain(toy_dataset: Path, models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """APGD on every fake, then Square on APGD's survivors only (source tiny-a, targets tiny-a and tiny-b)."""
    root = tmp_path_factory.mktemp("chain")
    run_attack(toy_dataset, models[0], list(models), APGD, root / "apgd")
    run_attack(toy_dataset, models[0], list(models), SQUARE, root / "square", survivors_of=[root / "apgd"])
    return root / "apgd", root / "square"


def _whitebox(folder: Path) -> dict[str, dict]:
    return {r["image"]: r for r in read_csv(folder / "results.csv") if r["setting"] == "whitebox"}


def test_skipped_images_are_exactly_those_the_earlier_attack_fooled(chain: tuple[Path, Path]) -> None:
    apgd, square = chain
    earlier, later = _whitebox(apgd), _whitebox(square)
    fooled = {i for i, r in earlier.items() if r["success"] == "1"}
    assert 0 < len(fooled) < len(earlier) == 10  # the test means something only with both kinds of image
    assert set(later) == set(earlier)  # every image has its whitebox row: attacked or skipped
    assert {i for i, r in later.items() if r["skipped"]} == fooled
    assert all(later[i]["skipped"] == "fooled by apgd-ce-linf" for i in fooled)
    for i, r in later.items():  # a skipped row has the clean verdict and no adversarial one
        assert r["clean_pred"] == earlier[i]["clean_pred"] and r["survivors_of"] == "apgd-ce-linf"
        assert (r["adv_pred"] == "" and r["success"] == "") if i in fooled else r["adv_pred"] in ("0", "1")
        assert (square / "images" / i).with_suffix(".png").is_file() is (i not in fooled)
    # transfer rows only for the images the attack crafted
    blackbox = {r["image"] for r in read_csv(square / "results.csv") if r["setting"] == "blackbox"}
    assert blackbox == set(earlier) - fooled


def test_the_survivors_column_has_its_own_n(chain: tuple[Path, Path]) -> None:
    apgd, square = chain
    from dfrobust.utils.io import read_record

    summary = read_record(square / "summary.json")
    n_skipped = sum(r["success"] == "1" for r in _whitebox(apgd).values())
    assert summary["survivors"]["n_skipped"] == n_skipped and summary["survivors"]["n_attacked"] == 10 - n_skipped
    assert summary["results"]["tiny-a"]["n"] == 10 - n_skipped and summary["crafting"]["n"] == 10 - n_skipped
    assert summary["results"]["tiny-a"]["n_skipped"] == n_skipped
    long = table2_rows(read_csv(square / "results.csv"))
    white = next(r for r in long if r["setting"] == "whitebox")
    assert white["n"] == 10 - n_skipped and white["survivors_of"] == "apgd-ce-linf" and white["n_skipped"] == n_skipped
    assert table2_counts(long)["tiny-a"]["square-linf_whitebox"] == 10 - n_skipped
    assert read_csv(square / "table2.csv")[0]["survivors_of"] == "apgd-ce-linf"
    # the success rate is on the survivors only: the skipped images are no successes of Square's
    attacked = [r for r in _whitebox(square).values() if not r["skipped"]]
    assert summary["crafting"]["success_rate"] == pytest.approx(sum(r["success"] == "1" for r in attacked) / len(attacked))


def test_robust_accuracy_counts_skipped_images_as_fooled(chain: tuple[Path, Path]) -> None:
    apgd, square = chain
    rows = [r for f in chain for r in read_csv(f / "results.csv") if r["setting"] == "whitebox"]
    ra = robust_accuracy_by_target(rows, TM, BUDGETS)["tiny-a"]
    earlier, later = _whitebox(apgd), _whitebox(square)
    robust = [i for i in earlier if earlier[i]["adv_pred"] == earlier[i]["label"] and later[i]["adv_pred"] == later[i]["label"]]
    assert ra.n == 10 and ra.k == len(robust) and ra.accuracy == pytest.approx(len(robust) / 10)


def test_a_smaller_max_images_draws_from_the_earlier_runs_images(
    chain: tuple[Path, Path], toy_dataset: Path, models: tuple[Path, Path], tmp_path: Path
) -> None:
    """Square on 6 fakes: 6 of APGD's 10 (not 6 of the split, which would share few with them); the other 4 of APGD's
    fakes cannot be scored robust or not, as Square neither attacked nor skipped them."""
    out = tmp_path / "square6"
    run_attack(toy_dataset, models[0], [models[0]], dataclasses.replace(SQUARE, max_images=6), out, survivors_of=[chain[0]])
    earlier, later = _whitebox(chain[0]), _whitebox(out)
    assert len(later) == 6 and set(later) < set(earlier)
    rows = [r for f in (chain[0], out) for r in read_csv(f / "results.csv") if r["setting"] == "whitebox"]
    ra = robust_accuracy_by_target(rows, TM, BUDGETS)["tiny-a"]
    assert ra.n == 6 and ra.k == sum(earlier[i]["success"] == "0" and later[i]["success"] == "0" for i in later)


def _row(image: str, attack: str, adv: int | str, skipped: str = "", clean: int = 0) -> dict:
    return {"image": image, "label": "0", "attack": attack, "source": "m", "target": "m", "setting": "whitebox",
            "clean_pred": str(clean), "adv_pred": str(adv), "skipped": skipped, "eps": EPS, "norm": "linf"}  # fmt: skip


def test_robust_accuracy_leaves_out_an_image_beyond_max_images() -> None:
    """a: fooled by APGD, skipped by Square; b: survives both; c: Square fools it; d: APGD only (Square's max_images)."""
    rows = [
        *(_row(i, "apgd", adv) for i, adv in (("a", 1), ("b", 0), ("c", 0), ("d", 0))),
        _row("a", "square", "", skipped="fooled by apgd"),
        _row("b", "square", 0),
        _row("c", "square", 1),
    ]
    ra = robust_accuracy(rows, TM)
    assert (ra.n, ra.k) == (3, 1)  # d is neither attacked nor skipped by Square: it cannot be scored
    assert ra.survivors == {"apgd": 2, "square": 1}
    # a skipped row counts as fooled even where APGD left the image correct (the row says another attack fooled it)
    ra = robust_accuracy([*rows, _row("d", "square", "", skipped="fooled by fgsm")], TM)
    assert (ra.n, ra.k) == (4, 1)


def test_masking_check_flags_only_a_certainly_stronger_square() -> None:
    """Square on APGD's survivors: flagged only when it fooled more survivors than APGD fooled images."""
    apgd = [_row(i, "apgd", int(i in "ab")) for i in "abcdef"]  # APGD fools 2 of 6
    square = [_row(i, "square", "", skipped="fooled by apgd") for i in "ab"]
    assert check_gradient_free_vs_gradient([*apgd, *square, *(_row(i, "square", int(i == "c")) for i in "cdef")], TM).passed
    strong = [_row(i, "square", int(i in "cde")) for i in "cdef"]  # 3 of 4 survivors: more than APGD's 2
    assert check_gradient_free_vs_gradient([*apgd, *square, *strong], TM).passed is False


def test_interrupted_chain_resumes_and_a_changed_earlier_attack_recrafts(
    chain: tuple[Path, Path], toy_dataset: Path, models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apgd = Path(shutil.copytree(chain[0], tmp_path / "apgd"))
    out = tmp_path / "square"
    real_batch = experiment.attack_batch
    calls: list[int] = []

    def dying_after_one(*args: object) -> list[dict]:
        calls.append(int(args[1]))  # type: ignore[call-overload]
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_batch(*args)

    monkeypatch.setattr(experiment, "attack_batch", dying_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_attack(toy_dataset, models[0], list(models), SQUARE, out, survivors_of=[apgd])
    calls.clear()
    monkeypatch.setattr(experiment, "attack_batch", lambda *a: calls.append(a[1]) or real_batch(*a))
    run_attack(toy_dataset, models[0], list(models), SQUARE, out, survivors_of=[apgd])
    assert calls == [1, 2]  # batch 0 was kept
    assert _rows_without_time(out / "results.csv") == _rows_without_time(chain[1] / "results.csv")
    calls.clear()
    run_attack(toy_dataset, models[0], list(models), SQUARE, out, survivors_of=[apgd])
    assert calls == []  # finished and unchanged

    # a new target re-scores the stored PNGs; the skipped rows stay as they were
    run_attack(toy_dataset, models[0], [models[0]], SQUARE, tmp_path / "wb", survivors_of=[apgd])
    run_attack(toy_dataset, models[0], list(models), SQUARE, tmp_path / "wb", survivors_of=[apgd])
    assert calls == [0, 1, 2]  # crafted once, for the whitebox-only run
    assert _rows_without_time(tmp_path / "wb" / "results.csv") == _rows_without_time(chain[1] / "results.csv")

    # the earlier attack changed (more steps): the survivors may change, so the later run is crafted again
    calls.clear()
    run_attack(toy_dataset, models[0], list(models), dataclasses.replace(APGD, params={**APGD.params, "steps": 4}), apgd, replace=True)
    with pytest.raises(DfrobustError, match="holds another attack run"):
        run_attack(toy_dataset, models[0], list(models), SQUARE, out, survivors_of=[apgd])
    run_attack(toy_dataset, models[0], list(models), SQUARE, out, survivors_of=[apgd], replace=True)
    assert calls == [0, 1, 2, 0, 1, 2]  # APGD's three batches, then every batch of Square again


def test_presets_plan_square_on_apgds_survivors(tmp_path: Path) -> None:
    from dfrobust.attacks.base import ATTACKS, attack_section_defaults
    from dfrobust.config import study_config
    from dfrobust.pipeline import plan_study

    for preset in ("quick", "cpu", "paper", "tiny"):
        assert study_config(preset)["attack"]["square"]["survivors_of"] == ["apgd", "apgd-margin"]
    # listed before APGD, Square is still planned after it
    cfg = study_config("tiny", ['attack.attacks=["fgsm", "square", "apgd"]'], attack_section_defaults, ATTACKS.canonical)
    stages = [s for s in plan_study(cfg, tmp_path / "run", device="cpu").stages if s.name.startswith("attack/")]
    names = [s.name for s in stages]
    squares = [s for s in stages if s.name.startswith("attack/square-")]
    assert squares
    for s in squares:
        earlier = s.name.replace("square-", "apgd-")
        assert earlier in s.deps and names.index(earlier) < names.index(s.name) and s.config["survivors_of"] == ["apgd"]
    assert all("survivors_of" not in s.config for s in stages if not s.name.startswith("attack/square-"))  # unchanged keys
    # APGD-margin joins the chain where the study runs it: APGD-CE -> APGD-margin -> Square, each on the survivors
    cfg = study_config("tiny", ['attack.attacks=["apgd", "square", "apgd-margin"]'], attack_section_defaults, ATTACKS.canonical)
    stages = {s.name: s for s in plan_study(cfg, tmp_path / "run2", device="cpu").stages if s.name.startswith("attack/")}
    names = list(stages)
    for name, s in stages.items():
        if name.startswith("attack/square-"):
            src = name.removeprefix("attack/square-")
            assert s.config["survivors_of"] == ["apgd", "apgd-margin"] and {f"attack/apgd-{src}", f"attack/apgd-margin-{src}"} <= set(
                s.deps
            )
            assert names.index(f"attack/apgd-margin-{src}") < names.index(name)
        if name.startswith("attack/apgd-margin-"):
            assert s.config["survivors_of"] == ["apgd"] and s.config["params"]["loss"] == "margin"
    # without APGD in the study, Square has no chain: it attacks every fake
    cfg = study_config("tiny", ['attack.attacks=["fgsm", "square"]'], attack_section_defaults, ATTACKS.canonical)
    assert all("survivors_of" not in s.config for s in plan_study(cfg, tmp_path / "run3", device="cpu").stages)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (['attack.square.survivors_of=["apgdd"]'], "names 'apgdd', which is no attack"),
        (['attack.apgd.survivors_of=["square"]'], "a loop of survivors_of"),
        (['attack.square.survivors_of=["square"]'], "a loop of survivors_of"),
    ],
)
def test_a_bad_chain_fails_at_planning(overrides: list[str], says: str, tmp_path: Path) -> None:
    from dfrobust.attacks.base import ATTACKS, attack_section_defaults
    from dfrobust.config import study_config
    from dfrobust.pipeline import plan_study

    cfg = study_config("tiny", overrides, attack_section_defaults, ATTACKS.canonical)
    with pytest.raises(DfrobustError, match=says):
        plan_study(cfg, tmp_path / "run", device="cpu")


def test_cli_attacks_the_survivors_of_an_earlier_run(
    chain: tuple[Path, Path], toy_dataset: Path, models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dfrobust.cli import main

    out = tmp_path / "square"
    args = ["attack", "--data", str(toy_dataset), "--source", str(models[0]), "--target", str(models[1]), "--attack", "square",
            "--eps", str(EPS), "--queries", "20", "--batch-size", "4", "--max-images", "10", "--device", "cpu",
            "--survivors-of", str(chain[0]), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "on survivors of apgd-ce-linf" in capsys.readouterr().out
    assert _rows_without_time(out / "results.csv") == _rows_without_time(chain[1] / "results.csv")
    with pytest.raises(DfrobustError, match="crafted on tiny-b, not on tiny-a"):
        other = tmp_path / "apgd-b"
        run_attack(toy_dataset, models[1], [models[1]], APGD, other)
        run_attack(toy_dataset, models[0], [models[0]], SQUARE, tmp_path / "x", survivors_of=[other])


def test_a_run_whose_every_image_was_fooled_earlier_has_no_rate() -> None:
    rows = [{**_row(i, "square-linf", "", skipped="fooled by apgd-ce-linf"), "survivors_of": "apgd-ce-linf"} for i in "ab"]
    assert target_aggregates(rows) == {"m": {"setting": "whitebox", "n": 0, "n_skipped": 2, "survivors_of": "apgd-ce-linf"}}
    assert table2_rows(rows) == []  # no cell rather than a rate on no image
