"""Logs people and machines can read: plain progress lines in pipes, --quiet/--verbose, status --json,
and the public API importable from the package root (issue 17)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dfrobust.cli import main
from dfrobust.config import study_config
from dfrobust.utils.io import write_json


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DFROBUST_QUIET"}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), DFROBUST_PROGRESS_EVERY="0", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dfrobust", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_piped_progress_is_plain_lines(tmp_path: Path) -> None:
    done = _run_cli(["data", "synth", "--out", "d", "--n", "32", "--size", "16"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("synth:")]
    assert lines and lines[-1].startswith("synth: 32/32 img (100%)")


def test_quiet_silences_progress_and_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DFROBUST_QUIET", raising=False)
    monkeypatch.setenv("DFROBUST_PROGRESS_EVERY", "0")
    assert main(["data", "synth", "--out", str(tmp_path / "a"), "--n", "16", "--size", "16"]) == 0
    assert "synth: 16/16 img" in capsys.readouterr().err
    assert main(["--quiet", "data", "synth", "--out", str(tmp_path / "b"), "--n", "16", "--size", "16"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "16 images" in captured.out


def test_quiet_and_verbose_before_or_after_the_command(toy_dataset: Path) -> None:
    from dfrobust.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--quiet", "status", "--run", "r"]).quiet
    assert parser.parse_args(["status", "--run", "r", "--verbose"]).verbose
    args = parser.parse_args(["data", "verify", str(toy_dataset)])
    assert args.quiet is False and args.verbose is False


def test_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    from dfrobust.pipeline import plan_study

    cfg = study_config("tiny")
    write_json(run / "config.json", {"config": cfg, "data_arg": None, "device": "cpu"})
    write_json(run / "plan.json", plan_study(cfg, run, device="cpu").record(cfg, {}))  # what reproduce writes first
    assert main(["status", "--run", str(run), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["done"] == 0 and status["total"] == len(status["stages"]) > 10
    assert status["stages"][0] == {"stage": "data", "state": "todo", "seconds": None, "output": str(run / "data")}


def test_exit_codes_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "exit status:" in text and "130" in text and "  2 " in text


def test_import_dfrobust_is_light() -> None:
    code = "import sys, dfrobust; print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )
    assert out.stdout.strip() == "False", out.stderr


#: The README's example (five lines), run here on the toy fixtures in place of the quick run's files.
README_EXAMPLE = re.search(
    r"## Python API.*?```python\n(.*?)```", (Path(__file__).resolve().parents[1] / "README.md").read_text(), re.S
).group(1)


def test_readme_example_runs(toy_dataset: Path, toy_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = README_EXAMPLE.replace("runs/quick/models/resnet18.safetensors", str(toy_model)).replace("runs/quick/data", str(toy_dataset))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the documented example itself
    assert capsys.readouterr().out.startswith("FGSM fooled ")
    from dfrobust import dip_purify, run_attack  # the rest of the public API imports from the top too

    assert callable(dip_purify) and callable(run_attack)
