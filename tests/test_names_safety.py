"""Every name a user gives stays inside its folder (issue 21): `--set` names, card names, stage outputs, `--force`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.stages import Stage, StageRunner

#: Names that must never become a path component.
BAD_NAMES = ["..", ".", "../x", "../../victim", "/abs", "/tmp/victim", "a/b", "a\\b", "nul\x00byte", "tab\there", "x" * 300, " padded "]
#: Name-list keys of a study config that become folders or stage names.
NAME_KEYS = ["adaptive.purifiers", "attack.attacks", "dip.purifiers", "dip.attacks", "train.hardened.roles",
             "attack.transfer_only", "attack.ensemble"]  # fmt: skip


def _victim(root: Path) -> Path:
    victim = root / "victim"
    victim.mkdir()
    (victim / "sentinel.txt").write_text("x")
    return victim


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def _first_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[0] if err else ""


@pytest.mark.parametrize("name", ["..", "../x", "/abs", "a/b", "x" * 300, "\x00", "été/..", "ok\nno"])
def test_check_name_refuses_path_like_names(name: str) -> None:
    from dfrobust.utils.names import check_name

    with pytest.raises(DfrobustError):
        check_name(name, "purifier")


@pytest.mark.parametrize("name", ["dip", "jpeg", "resnet18-lip50", "my-xception.v2", "ensemble(a+b)", "détecteur"])
def test_check_name_keeps_ordinary_names(name: str) -> None:
    from dfrobust.utils.names import check_name

    assert check_name(name, "purifier") == name


def test_safe_join_stays_inside(tmp_path: Path) -> None:
    from dfrobust.utils.names import safe_join

    assert safe_join(tmp_path, "adaptive", "dip") == tmp_path / "adaptive" / "dip"
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(DfrobustError, match="outside"):
        safe_join(tmp_path, "link", "x")
    with pytest.raises(DfrobustError):
        safe_join(tmp_path, "..")


def test_set_purifier_outside_the_run_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's critical case: `--set adaptive.purifiers=["../../victim"]` then `--force adaptive` deleted victim/."""
    victim = _victim(tmp_path)
    run = tmp_path / "runs" / "R"
    before = _tree(tmp_path)
    code = main(["reproduce", "--preset", "tiny", "--run", str(run), "--set", 'adaptive.purifiers=["../../victim"]'])
    assert code == 2
    assert "adaptive.purifiers" in _first_line(capsys)
    assert _tree(tmp_path) == before and not run.exists()
    code = main(["reproduce", "--preset", "tiny", "--run", str(run), "--set", f'adaptive.purifiers=["{victim}"]'])
    assert code == 2 and "adaptive.purifiers" in _first_line(capsys)  # an absolute path: one line, no traceback
    assert (victim / "sentinel.txt").read_text() == "x"


def test_set_name_on_an_existing_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dfrobust.config import study_config
    from dfrobust.utils.io import write_json

    _victim(tmp_path)
    run = tmp_path / "R"
    run.mkdir()
    write_json(run / "config.json", {"config": study_config("tiny", []), "data_arg": None, "device": "cpu"})
    before = _tree(tmp_path)
    assert main(["reproduce", "--run", str(run), "--set", 'adaptive.purifiers=["../victim"]', "--force", "adaptive"]) == 2
    assert "adaptive.purifiers" in _first_line(capsys)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("key", NAME_KEYS)
@pytest.mark.parametrize("name", BAD_NAMES)
def test_fuzz_every_name_key(key: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Generated names into every name-taking `--set` key: exit 2, one line, nothing outside the run touched."""
    victim = _victim(tmp_path)
    before = _tree(tmp_path)
    run = tmp_path / "R"
    code = main(["reproduce", "--preset", "tiny", "--run", str(run), "--set", f"{key}={json.dumps([name])}"])
    assert code == 2
    assert key in _first_line(capsys)
    assert _tree(tmp_path) == before and (victim / "sentinel.txt").read_text() == "x"


@pytest.mark.parametrize("key", ["adaptive.attack", "adaptive.bpda"])
def test_fuzz_single_name_keys(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in BAD_NAMES:
        assert main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "R"), "--set", f"{key}={json.dumps(name)}"]) == 2
        assert key in _first_line(capsys)
    assert not (tmp_path / "R").exists()


@pytest.mark.parametrize("name", ["..", ".", "../up", "/abs", "a/b", "x" * 300, "bad\x01"])
def test_card_named_like_a_path_is_refused(name: str, toy_model: Path, toy_dataset: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    card = tmp_path / "det.toml"
    card.write_text(f'source = "dfrobust:{toy_model}"\nname = {json.dumps(name)}\n')
    run = tmp_path / "RD"
    assert main(["card", "check", str(card), "--device", "cpu"]) == 2
    assert "name" in _first_line(capsys)
    assert main(["reproduce", "--preset", "tiny", "--run", str(run), "--data", str(toy_dataset), "--detector", str(card)]) == 2
    assert "name" in _first_line(capsys)
    assert not run.exists()


def test_force_never_deletes_a_linked_stage_output(tmp_path: Path) -> None:
    outside = _victim(tmp_path)
    run = tmp_path / "run"
    (run / "curves").mkdir(parents=True)
    link = run / "curves" / "m"
    link.symlink_to(outside, target_is_directory=True)
    stage = Stage("curves/m", {"a": 1}, link, lambda: None)
    with pytest.raises(DfrobustError, match="link"):
        StageRunner(run, force={"curves"}, log=lambda s: None).run(stage)
    assert (outside / "sentinel.txt").read_text() == "x"


def test_force_outside_output_is_refused(tmp_path: Path) -> None:
    outside = _victim(tmp_path)
    stage = Stage("curves/m", {"a": 1}, outside, lambda: None)
    with pytest.raises(DfrobustError, match="outside the run folder"):
        StageRunner(tmp_path / "run", force={"curves"}, log=lambda s: None).run(stage)
    assert (outside / "sentinel.txt").read_text() == "x"


def test_force_of_no_stage_is_an_error(tmp_path: Path) -> None:
    from dfrobust.pipeline import check_force

    stages = [Stage("data", {}, tmp_path / "d", lambda: None), Stage("attack/cw-resnet18", {}, tmp_path / "a", lambda: None)]
    check_force({"attack/cw", "attack", "data"}, stages, tmp_path)  # a stage, a group, an attack on every source
    with pytest.raises(DfrobustError, match="matches no stage"):
        check_force({"curves/../.."}, stages, tmp_path)


def test_run_record_holding_a_list_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "R"
    run.mkdir()
    (run / "config.json").write_text("[1, 2]")
    assert main(["reproduce", "--run", str(run)]) == 2
    assert "config.json" in _first_line(capsys)
    from dfrobust.utils.io import read_record

    (tmp_path / "summary.json").write_text("[]")
    with pytest.raises(DfrobustError, match="holds a JSON list"):
        read_record(tmp_path / "summary.json")


def test_values_checked_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for setting in ["adaptive.eot=0", "adaptive.eval_draws=0", "adaptive.steps=-1", "certify.alpha=2"]:
        assert main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "R"), "--set", setting]) == 2
        assert setting.split("=")[0] in _first_line(capsys)
    assert main(["data", "synth", "--out", str(tmp_path / "big"), "--n", "4", "--size", "100000"]) == 2
    assert "--size" in _first_line(capsys) and not (tmp_path / "big").exists()
    assert not (tmp_path / "R").exists()


def test_card_with_huge_input_size_is_refused(toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "big.toml"
    card.write_text(f'source = "dfrobust:{toy_model}"\ninput_size = [100000, 100000]\n')
    assert main(["card", "check", str(card), "--device", "cpu"]) == 2
    assert "input_size" in _first_line(capsys)


def test_card_factory_that_exits_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exiter_mod.py").write_text("import sys\n\ndef build():\n    sys.exit(0)\n")
    card = tmp_path / "exit.toml"
    card.write_text('source = "python:exiter_mod:build"\nnormalization = "none"\noutput = "logits"\nfake_index = 0\n')
    monkeypatch.chdir(tmp_path)
    assert main(["card", "check", str(card), "--device", "cpu"]) == 2
    assert "sys.exit" in _first_line(capsys)


def test_pth_error_does_not_advise_unsafe_loading(tmp_path: Path) -> None:
    import torch

    from dfrobust.models.weights import load_state_dict_file

    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module, not a state dict
    with pytest.raises(DfrobustError) as info:
        load_state_dict_file(path)
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)


def test_summary_md_escapes_html() -> None:
    from dfrobust.report.tables import md_escape

    assert md_escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert "<" not in md_escape("a|<b>") and "\\|" in md_escape("a|<b>")


def test_report_refuses_a_locked_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dfrobust.utils.io import write_json
    from dfrobust.utils.runlock import run_lock

    run = tmp_path / "R"
    run.mkdir()
    write_json(run / "plan.json", {"stages": [], "roles": []})
    if os.name != "posix":
        pytest.skip("flock")
    with run_lock(run):
        # another process holds the lock: simulate with a child that tries to report
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "dfrobust", "report", str(run)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})  # fmt: skip
    assert proc.returncode == 2 and "in use" in proc.stderr
    assert not (run / "report").exists()
