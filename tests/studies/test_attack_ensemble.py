"""Transfer attacks crafted on an ensemble of surrogate models: the CLI, run_attack, the plan and Table II."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.studies.attack_run import AttackConfig, run_attack
from dfrobust.studies.attack_tables import table2_rows, table2_wide
from dfrobust.cli import main
from dfrobust.config import study_config
from dfrobust.config_checks import validate_study_config
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector, save_detector
from dfrobust.models.ensemble import LogitEnsemble, check_input_sizes, check_output_shapes
from dfrobust.pipeline import attack_plan, plan_study
from dfrobust.report.collected import CollectedRun
from dfrobust.report.render import column_label, table2
from dfrobust.roles import study_roles
from dfrobust.utils.io import load_image, read_csv, read_json

PGD = AttackConfig("pgd", {"eps": 0.1, "steps": 3}, batch_size=4, max_images=6, device="cpu")
ENS = "ensemble(tiny-a+tiny-b)"


@pytest.fixture(scope="module")
def models(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Three detectors: the toy model as ``tiny-a`` and two noisy copies ``tiny-b``, ``tiny-c`` (made instantly)."""
    folder = tmp_path_factory.mktemp("ensemble-models")
    a = Path(shutil.copy(toy_model, folder / "tiny-a.safetensors"))
    shutil.copy(toy_model.with_suffix(".json"), folder / "tiny-a.json")
    out = [a]
    for seed, name in ((1, "tiny-b"), (2, "tiny-c")):
        model, _ = load_detector(toy_model)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=gen) * 0.3 * param.std().clamp_min(1e-3))
        out.append(save_detector(model, folder / f"{name}.safetensors", {"input_size": [32, 32]}))
    return out[0], out[1], out[2]


@pytest.fixture(scope="module")
def ensemble_run(toy_dataset: Path, models: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dfrobust attack --source a --source b --target c a``: crafted on the ensemble of a and b."""
    out = tmp_path_factory.mktemp("ens") / "run"
    a, b, c = map(str, models)
    assert main(["attack", "--data", str(toy_dataset), "--source", a, "--source", b, "--target", c, a, "--attack", "pgd",
                 "--eps", "0.1", "--steps", "3", "--max-images", "6", "--batch-size", "4", "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    return out


def _rows_without_time(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(path)]


def test_cli_crafts_on_the_ensemble(ensemble_run: Path, toy_dataset: Path, models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    rows = read_csv(ensemble_run / "results.csv")
    assert {(r["target"], r["setting"]) for r in rows} == {(ENS, "whitebox"), ("tiny-c", "blackbox"), ("tiny-a", "ensemble-member")}
    assert len(rows) == 6 * 3
    assert {r["source"] for r in rows} == {ENS} and {r["source_members"] for r in rows} == {"tiny-a+tiny-b"}
    summary = read_json(ensemble_run / "summary.json")
    assert set(summary["source"][ENS]["members"]) == {"tiny-a", "tiny-b"}

    # the whitebox score is P(real) of the mean of the two members' logits on the stored PNG
    a, b = (load_detector(p)[0] for p in models[:2])
    white = [r for r in rows if r["setting"] == "whitebox"]
    adv = torch.stack([load_image(ensemble_run / "images" / r["image"]) for r in white])
    with torch.no_grad():
        expected = torch.softmax((a(adv) + b(adv)) / 2, dim=1)[:, 1]
    assert torch.allclose(expected, torch.tensor([float(r["adv_p_real"]) for r in white]), atol=1e-5)

    # the same attack on tiny-a alone makes other images
    single = tmp_path / "single"
    run_attack(toy_dataset, models[0], [models[2]], PGD, single)
    pngs = sorted(p.relative_to(single) for p in (single / "images").rglob("*.png"))
    assert pngs == sorted(p.relative_to(ensemble_run) for p in (ensemble_run / "images").rglob("*.png"))
    assert any((single / p).read_bytes() != (ensemble_run / p).read_bytes() for p in pngs)
    assert {r["source"] for r in read_csv(single / "results.csv")} == {"tiny-a"}


def test_ensemble_shards_merge_into_the_one_process_rows(ensemble_run: Path, toy_dataset: Path, models: tuple[Path, Path, Path],
                                                         tmp_path: Path) -> None:  # fmt: skip
    out, sources, targets = tmp_path / "run", list(models[:2]), [models[2], models[0]]
    first = run_attack(toy_dataset, sources, targets, PGD, out, rank=1, world_size=2)
    assert not first["complete"]
    assert run_attack(toy_dataset, sources, targets, PGD, out, rank=0, world_size=2)["complete"]
    assert _rows_without_time(out / "results.csv") == _rows_without_time(ensemble_run / "results.csv")
    # another name is another run in the same folder: refused, not mixed in
    with pytest.raises(DfrobustError, match="another attack run"):
        run_attack(toy_dataset, sources, targets, PGD, out, source_name="mine")


def test_ensemble_errors_are_one_line(toy_dataset: Path, models: tuple[Path, Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    base = ["attack", "--data", str(toy_dataset), "--attack", "fgsm", "--device", "cpu", "--out", str(tmp_path / "x")]
    model, _ = load_detector(models[0])
    big = save_detector(model, tmp_path / "big.safetensors", {"input_size": [64, 64]})
    assert main([*base, "--source", str(models[0]), "--source", str(big)]) == 2
    assert "ensemble members take different input sizes (tiny-a 32x32, big 64x64)" in capsys.readouterr().err
    assert main([*base, "--source", str(models[0]), "--source", str(models[0])]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main([*base, "--source", str(models[0]), "--source-name", "solo"]) == 2
    assert "--source-name names an ensemble" in capsys.readouterr().err
    assert not (tmp_path / "x" / "results.csv").exists()


class Linear(nn.Module):
    """Logits of a fixed linear map of the channel means (``classes`` outputs)."""

    def __init__(self, classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, 3, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) @ self.weight.T


def test_ensemble_of_one_is_the_model_and_members_must_agree(toy_model: Path) -> None:
    single, _ = load_detector(toy_model)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(LogitEnsemble([single])(x), single(x), atol=1e-6)
        assert torch.allclose(LogitEnsemble.from_checkpoints([toy_model])(x), single(x), atol=1e-6)
    check_output_shapes({"a": Linear(), "b": Linear(seed=1)}, x[:1])
    with pytest.raises(DfrobustError, match=r"different shapes \(a \[2\], b \[3\]\)"):
        check_output_shapes({"a": Linear(), "b": Linear(classes=3)}, x[:1])
    check_input_sizes({"a": (32, 32), "card": None, "b": (32, 32)})  # a card resizes inside: any size
    with pytest.raises(DfrobustError, match="different input sizes"):
        check_input_sizes({"a": (32, 32), "b": (48, 48)})


def _cards(tmp_path: Path, names: list[str]) -> list[str]:
    cards = []
    for name in names:
        card = tmp_path / f"{name}.toml"
        card.write_text(f'source = "dfrobust:{name}.safetensors"\nname = "{name}"\n')
        cards.append(str(card))
    return cards


def test_attack_plan_adds_one_ensemble_per_target_of_a_transfer_group(tmp_path: Path) -> None:
    cfg = study_config("tiny", ['attack.attacks=["fgsm"]'])
    cfg["run"]["detectors"] = _cards(tmp_path, ["x", "y", "z"])
    ens = [r for r in attack_plan(cfg) if r.members]
    assert [(r.attack, r.members, r.targets[1:], r.folder) for r in ens] == [
        ("dimifgsm", ("y", "z"), ["x"], "dimifgsm-ens-x"),
        ("dimifgsm", ("x", "z"), ["y"], "dimifgsm-ens-y"),
        ("dimifgsm", ("x", "y"), ["z"], "dimifgsm-ens-z"),
    ]
    assert ens[0].source == "ensemble(y+z)" and ens[0].targets[0] == "ensemble(y+z)"
    plan = plan_study(cfg, tmp_path / "run")
    stage = next(s for s in plan.stages if s.name == "attack/dimifgsm-ens-x")
    assert set(stage.deps) == {"data", "card/x", "card/y", "card/z"}
    record = plan.record(cfg, {})
    entry = next(a for a in record["attacks"] if a.get("members") == ["y", "z"])
    assert entry["dir"] == "attacks/dimifgsm-ens-x" and entry["source"] == "ensemble(y+z)"

    # two detectors have no "others" to ensemble; the paper's roles transfer from one source each; [] turns it off
    two = study_config("tiny", ['attack.attacks=["fgsm"]'])
    two["run"]["detectors"] = _cards(tmp_path, ["x", "y"])
    assert not any(r.members for r in attack_plan(two))
    assert not any(r.members for r in attack_plan(study_config("tiny")))
    off = study_config("tiny", ['attack.attacks=["fgsm"]', "attack.ensemble=[]"])
    off["run"]["detectors"] = cfg["run"]["detectors"]
    validate_study_config(off)
    assert not any(r.members for r in attack_plan(off, study_roles(off)))
    with pytest.raises(DfrobustError, match="attack.ensemble"):
        validate_study_config(study_config("tiny", ['attack.ensemble="dimifgsm"']))


def _row(target: str, setting: str, source: str, adv: int, members: str = "") -> dict[str, str]:
    row = {"image": f"fake/{target}{source}{adv}.png", "label": "0", "attack": "dimifgsm", "source": source, "target": target,
           "setting": setting, "clean_pred": "0", "adv_pred": str(adv), "l2": "1", "linf": "0.02", "psnr": "40", "ssim": "0.9",
           "success": str(adv), "seconds": "0.1"}  # fmt: skip
    return {**row, "source_members": members} if members else row


def test_table2_shows_one_ensemble_column_beside_the_plain_transfer() -> None:
    rows = [
        _row("x", "blackbox", "y", 0), _row("x", "blackbox", "ensemble(y+z)", 1, "y+z"),
        _row("ensemble(y+z)", "whitebox", "ensemble(y+z)", 1, "y+z"),
        _row("y", "blackbox", "x", 0), _row("y", "blackbox", "ensemble(x+z)", 0, "x+z"),
    ]  # fmt: skip
    wide = {r["model"]: r for r in table2_wide(table2_rows(rows))}
    assert wide["x"] == {"model": "x", "unperturbed": 1.0, "dimifgsm_blackbox": 1.0, "dimifgsm_blackbox_from_ensemble": 0.0}
    assert wide["y"]["dimifgsm_blackbox_from_ensemble"] == 1.0
    assert column_label("dimifgsm_blackbox_from_ensemble") == "DI-MI-FGSM blackbox from ensemble"

    roles = [{"name": n, "group": "yours", "label": n} for n in ("x", "y")]
    plan = {"attacks": [{"attack": "dimifgsm", "source": "ensemble(y+z)", "members": ["y", "z"]},
                        {"attack": "dimifgsm", "source": "ensemble(x+z)", "members": ["x", "z"]}]}  # fmt: skip
    t2 = table2(CollectedRun(attack_rows=rows, plan=plan, roles=roles))
    assert list(t2.wide) == ["x", "y"]  # the surrogate has no row of its own
    assert "DI-MI-FGSM blackbox from ensemble" in t2.table.columns and "From ensemble" in t2.table.note
