"""`dfrobust reproduce` on an existing run: its recorded preset is kept, the folder is locked, RUN/run.log is written."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dfrobust.cli import main
from dfrobust.config import study_config
from dfrobust.utils.io import write_json


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the pipeline by a recorder (no stage runs); it logs one line as a stage would."""
    seen: list[dict[str, Any]] = []

    def fake(
        cfg: dict, run_dir: Path, data_arg: Any = None, device: str = "auto", force: set | None = None, devices: list[str] | None = None
    ) -> Path:
        logging.getLogger("dfrobust.pipeline").info("[run]  data")
        seen.append({"cfg": cfg, "run_dir": Path(run_dir), "data_arg": data_arg, "force": force})
        return Path(run_dir) / "report"

    monkeypatch.setattr("dfrobust.pipeline.reproduce", fake)
    return seen


def _existing_run(run: Path, preset: str = "tiny", overrides: list[str] | None = None, data_arg: str | None = None) -> Path:
    run.mkdir(parents=True)
    write_json(run / "config.json", {"config": study_config(preset, overrides or []), "data_arg": data_arg, "device": "cpu"})
    return run


def test_an_existing_run_keeps_its_preset(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    run = _existing_run(tmp_path / "run", "tiny", ["attack.cw.max_steps=7"], data_arg="/data/faces")
    assert main(["reproduce", "--run", str(run)]) == 0
    cfg = calls[-1]["cfg"]
    assert cfg["run"]["preset"] == "tiny" and cfg["attack"]["cw"]["max_steps"] == 7
    assert calls[-1]["data_arg"] == "/data/faces"  # its recorded --data too
    assert main(["reproduce", "--run", str(run), "--set", "attack.cw.max_steps=9"]) == 0
    assert calls[-1]["cfg"]["run"]["preset"] == "tiny" and calls[-1]["cfg"]["attack"]["cw"]["max_steps"] == 9


def test_another_preset_needs_force_preset(tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    run = _existing_run(tmp_path / "run", "tiny")
    assert main(["reproduce", "--run", str(run), "--preset", "quick", "--force", "attack/cw"]) == 2
    err = capsys.readouterr().err
    assert "was made with preset tiny, not quick" in err and "--force preset" in err and not calls
    assert main(["reproduce", "--run", str(run), "--preset", "tiny"]) == 0  # its own preset: fine
    assert main(["reproduce", "--run", str(run), "--preset", "quick", "--force", "preset"]) == 0
    assert calls[-1]["cfg"]["run"]["preset"] == "quick" and calls[-1]["force"] == set()


def test_a_new_run_defaults_to_quick_and_a_foreign_folder_is_refused(
    tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reproduce", "--run", str(tmp_path / "new")]) == 0
    assert calls[-1]["cfg"]["run"]["preset"] == "quick"
    home = tmp_path / "home"
    home.mkdir()
    (home / "draft.tex").write_text("x")
    assert main(["reproduce", "--run", str(home), "--preset", "tiny"]) == 2
    assert "is not a dfrobust run folder" in capsys.readouterr().err and len(calls) == 1


def test_reproduce_writes_run_log(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    run = tmp_path / "run"
    assert main(["reproduce", "--run", str(run), "--preset", "tiny", "--quiet"]) == 0
    text = (run / "run.log").read_text()
    assert "preset tiny" in text and "dfrobust.pipeline: [run]  data" in text and "reproduce finished" in text
    assert not logging.getLogger("dfrobust").handlers or all(
        not isinstance(h, logging.FileHandler) for h in logging.getLogger("dfrobust").handlers
    )  # the file handler is gone after the call


def test_a_locked_run_is_refused_naming_the_holder(tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    from dfrobust.utils.runlock import run_lock

    run = _existing_run(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom dfrobust.utils.runlock import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert main(["reproduce", "--run", str(run)]) == 2
        last = capsys.readouterr().err.splitlines()[-1]  # after the info line "continuing run ..."
        assert last.startswith("error: ") and f"is in use by process {holder.pid}" in last and not calls
    finally:
        holder.kill()
        holder.wait()
    with run_lock(run):  # the kernel released the dead holder's lock: taken over
        assert (run / ".lock").read_text().strip() == str(os.getpid())
    assert main(["reproduce", "--run", str(run)]) == 0


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    from dfrobust.utils.runlock import run_lock

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / ".lock").write_text(f"{dead}\n")
    with run_lock(tmp_path) as path:
        assert path.read_text().strip() == str(os.getpid())
