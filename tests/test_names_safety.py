"""Issue 21, items 1, 2 and 6 and the fuzz test: every name a user gives stays inside its folder.

A name (purifier, attack, role, card, stage) from the CLI, ``--set``, a preset file or a card
that is not a plain name is a one-line error (exit 2) before any work, and no file outside the
run is touched; a path joined from a name, or a stage output cleared by ``--force``, never leaves
its folder.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from dfrobust.cli import main
from dfrobust.config import study_config
from dfrobust.errors import DfrobustError
from dfrobust.stages import Stage, StageRunner
from dfrobust.utils.io import write_json
from dfrobust.utils.names import check_name, check_stage_name, safe_join

#: The generated names of the issue: parent references, separators, absolute paths, a NUL, 300 characters, unicode.
BAD_NAMES = ["..", ".", "../x", "../../victim", "/abs", "/tmp/x", "a/b", "a\\b", "\x00", "a\x00b", "x" * 300,
             "\u202eevil", "a\uff0fb", "caf\u00e9", "\u540d\u524d", " lead", "-x", ""]  # fmt: skip


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The pipeline replaced by a recorder: a refused call never reaches it."""
    seen: list[dict[str, Any]] = []

    def fake(cfg: dict, run_dir: Path, data_arg: Any = None, device: str = "auto", force: set | None = None,
             devices: list[str] | None = None) -> Path:
        logging.getLogger("dfrobust.pipeline").info("[run]  data")
        seen.append({"cfg": cfg, "force": force})
        return Path(run_dir) / "report"

    monkeypatch.setattr("dfrobust.pipeline.reproduce", fake)
    return seen


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` outside ``skip`` with its size and mtime (what a test checks is untouched)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            continue
        for f in files:
            st = (Path(dirpath) / f).stat()
            out[str(Path(dirpath) / f)] = (st.st_size, st.st_mtime_ns)
    return out


def check_name_or_none(name: str) -> DfrobustError | None:
    """The error :func:`check_name` raises for ``name`` (``None``: a valid name)."""
    try:
        check_name("--x", name)
    except DfrobustError as exc:
        return exc
    return None


def _error(err: str) -> str:
    """The one error line of a refused call (log lines such as "continuing run ..." may precede it)."""
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "sentinel.txt").write_text("x")
    return victim


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "work" / "R"
    run.mkdir(parents=True)
    write_json(run / "config.json", {"config": study_config("tiny"), "data_arg": None, "device": "cpu"})
    return run


def _toml_list(name: str) -> str:
    return json.dumps([name])  # JSON escapes (\u0000, \u202e) are valid TOML basic strings


# --- item 1: a --set value (or a preset) names a folder outside the run ---------------------------


@pytest.mark.parametrize("value", ["../../victim", "/abs/victim"])
def test_adaptive_purifier_outside_the_run_is_refused(tmp_path: Path, calls: list, capsys: pytest.CaptureFixture[str], value: str) -> None:
    victim, run = _victim(tmp_path), _run(tmp_path)
    code = main(["reproduce", "--run", str(run), "--set", f"adaptive.purifiers={_toml_list(value)}"])
    first = _error(capsys.readouterr().err)
    assert code == 2 and not calls
    assert first.startswith("error: config adaptive.purifiers") and "path separator" in first
    assert (victim / "sentinel.txt").read_text() == "x" and not (victim / "summary.json").exists()


def test_a_preset_file_cannot_carry_a_path_as_a_name(tmp_path: Path, calls: list, capsys: pytest.CaptureFixture[str]) -> None:
    victim = _victim(tmp_path)
    preset = tmp_path / "evil.toml"
    preset.write_text('extends = "tiny"\n[adaptive]\npurifiers = ["../victim"]\n')
    assert main(["reproduce", "--preset", str(preset), "--run", str(tmp_path / "R")]) == 2 and not calls
    assert "adaptive.purifiers" in capsys.readouterr().err
    assert (victim / "sentinel.txt").exists()


def test_force_never_deletes_outside_the_run(tmp_path: Path) -> None:
    """The guard behind the checks: a stage whose output lies outside the run is not cleared."""
    victim, run = _victim(tmp_path), tmp_path / "R"
    run.mkdir()
    stage = Stage("adaptive/x", {}, run / "adaptive" / ".." / ".." / "victim", lambda: None)
    with pytest.raises(DfrobustError, match="not inside the run folder"):
        StageRunner(run, force={"adaptive"}).run(stage)
    assert (victim / "sentinel.txt").read_text() == "x"


def test_safe_join_keeps_a_path_under_its_parent(tmp_path: Path) -> None:
    assert safe_join(tmp_path / "adaptive", "dip") == tmp_path / "adaptive" / "dip"
    for name in ("..", "../victim", "/abs", "a/../../b"):
        with pytest.raises(DfrobustError, match="leads outside"):
            safe_join(tmp_path / "adaptive", name)
    (tmp_path / "adaptive").mkdir()
    (tmp_path / "adaptive" / "link").symlink_to(tmp_path)  # a symlink that points out is refused too
    with pytest.raises(DfrobustError, match="leads outside"):
        safe_join(tmp_path / "adaptive", "link", "x")


# --- item 2: a detector card named ".." -----------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x"])
def test_a_card_named_like_a_path_is_refused(tmp_path: Path, toy_model: Path, calls: list, capsys: pytest.CaptureFixture[str], name: str) -> None:
    card = tmp_path / "det.toml"
    card.write_text(f'source = "dfrobust:{toy_model}"\nname = {json.dumps(name)}\n')
    assert main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "RD"), "--detector", str(card)]) == 2 and not calls
    first = _error(capsys.readouterr().err)
    assert first.startswith("error:") and "`name`" in first
    assert main(["card", "check", str(card)]) == 2


def test_force_on_a_stage_at_the_run_root_keeps_the_run(tmp_path: Path) -> None:
    run = tmp_path / "RD"
    run.mkdir()
    (run / "plan.json").write_text("{}")
    stage = Stage("curves/..", {}, run / "curves" / "..", lambda: None)
    with pytest.raises(DfrobustError, match="not inside the run folder"):
        StageRunner(run, force={"curves"}).run(stage)
    assert (run / "plan.json").is_file()


# --- item 6: values that passed unchecked or crashed --------------------------------------------


@pytest.mark.parametrize("override, key", [("adaptive.eot=0", "adaptive.eot"), ("adaptive.steps=0", "adaptive.steps"),
                                           ("data.size=100000", "data.size")])
def test_values_checked_before_any_work(tmp_path: Path, calls: list, capsys: pytest.CaptureFixture[str], override: str, key: str) -> None:
    assert main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "R"), "--set", override]) == 2 and not calls
    assert _error(capsys.readouterr().err).startswith(f"error: config {key} = ")


def test_force_on_a_symlinked_output_removes_only_the_link(tmp_path: Path) -> None:
    victim, run = _victim(tmp_path), tmp_path / "R"
    (run / "curves").mkdir(parents=True)
    (run / "curves" / "m").symlink_to(victim)
    ran: list[int] = []
    stage = Stage("curves/m", {}, run / "curves" / "m", lambda: ran.append(1))
    StageRunner(run, force={"curves"}).run(stage)
    assert ran == [1] and not (run / "curves" / "m").is_symlink()
    assert (victim / "sentinel.txt").read_text() == "x"


@pytest.mark.parametrize("name", ["run.json", "summary.json", "config.json"])
def test_a_record_holding_a_list_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    from dfrobust.utils.io import read_json

    (tmp_path / name).write_text("[1, 2]")
    with pytest.raises(DfrobustError, match="holds a JSON list"):
        read_json(tmp_path / name)


def test_an_existing_run_whose_config_is_a_list(tmp_path: Path, calls: list, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "R"
    run.mkdir()
    (run / "config.json").write_text("[]")
    assert main(["reproduce", "--run", str(run)]) == 2 and not calls
    assert "holds a JSON list" in _error(capsys.readouterr().err)


# --- the fuzz test of "Done when" -----------------------------------------------------------------

#: Every --set key whose value is a list of names, and the one that is a single name.
LIST_KEYS = ["adaptive.purifiers", "dip.purifiers", "dip.attacks", "attack.attacks", "attack.transfer_only",
             "attack.ensemble", "train.hardened.roles"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES)
def test_fuzz_names_into_every_name_option(tmp_path: Path, toy_model: Path, calls: list, capsys: pytest.CaptureFixture[str], name: str) -> None:
    victim, run = _victim(tmp_path), _run(tmp_path)
    before = _snapshot(tmp_path, run)
    attempts: list[list[str]] = [["reproduce", "--run", str(run), "--set", f"{key}={_toml_list(name)}"] for key in LIST_KEYS]
    attempts.append(["reproduce", "--run", str(run), "--set", f"adaptive.attack={json.dumps(name)}"])
    if "." not in name and check_name_or_none(name.strip()) is not None:  # --set strips a key's parts: " lead" is "lead"
        attempts.append(["reproduce", "--run", str(run), "--set", f"train.vgg16.{name}=1"])
    if "/" not in name:  # GROUP/NAME is a stage name's form
        attempts.append(["reproduce", "--run", str(run), f"--force={name}"])
    if name:  # "adaptive/" is the group
        attempts.append(["reproduce", "--run", str(run), f"--force=adaptive/{name}"])
    attempts.append(["attack", "--data", str(tmp_path / "nodata"), "--source", str(toy_model), "--attack", "fgsm",
                     "--out", str(tmp_path / "atk"), f"--source-name={name}"])  # fmt: skip
    card = tmp_path / "card.toml"
    card.write_text(f'source = "dfrobust:{toy_model}"\nname = {json.dumps(name)}\n')
    attempts.append(["reproduce", "--run", str(run), "--detector", str(card)])
    before[str(card)] = (card.stat().st_size, card.stat().st_mtime_ns)
    for argv in attempts:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        _error(err)
    assert not calls
    assert _snapshot(tmp_path, run) == before
    assert (victim / "sentinel.txt").read_text() == "x"
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_fuzz_names_are_refused_by_the_checks(name: str) -> None:
    with pytest.raises(DfrobustError):
        check_name("--x", name)
    if "/" not in name:  # GROUP/NAME is a stage name's form
        with pytest.raises(DfrobustError):
            check_stage_name("--force", name)
    if name:
        with pytest.raises(DfrobustError):
            check_stage_name("--force", f"adaptive/{name}")


@pytest.mark.parametrize("name", ["dip", "jpeg", "resnet18-lip50", "resnet18-at", "ensemble(a+b)", "my detector", "v1.2"])
def test_plain_names_pass(name: str) -> None:
    assert check_name("--x", name) == name
    assert check_stage_name("--force", f"train/{name}") == f"train/{name}"
