"""Pinning CPU numerics: which settings a level sets, the errors, and what a pinned run records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfrobust.errors import DfrobustError
from dfrobust.utils import numerics
from dfrobust.utils.numerics import ISA_LEVELS, PIN_ENV, cpu_flags, pin_from_env, pin_numerics

SRC = Path(__file__).resolve().parents[2] / "src"
HAS_AVX2 = (cpu_flags() or set()) >= {"avx2"}


@pytest.fixture(autouse=True)
def _keep_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    numerics._PINNED = None


@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86-64 CPU with AVX2")
def test_pin_sets_the_three_libraries_and_threads() -> None:
    import torch

    env: dict[str, str] = {"DFROBUST_THREADS": "1"}
    pinned = pin_numerics("AVX2", environ=env)
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["MKL_CBWR"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert pinned["isa"] == "avx2" and pinned["threads"] == 1 and torch.get_num_threads() == 1
    assert numerics.numerics_record()["pinned_isa"] == "avx2"


def test_pin_errors() -> None:
    with pytest.raises(DfrobustError, match=PIN_ENV):
        pin_numerics("sse4")
    if HAS_AVX2:
        with pytest.raises(DfrobustError, match="contradicts"):
            pin_numerics("avx2", environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})
        with pytest.raises(DfrobustError, match="DFROBUST_THREADS"):
            pin_numerics("avx2", environ={"DFROBUST_THREADS": "0"})
    assert pin_from_env({}) is None and set(ISA_LEVELS) == {"avx2", "avx512"}


@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86-64 CPU with AVX2")
def test_pin_after_import_reaches_aten_and_versions_record_it() -> None:
    # A fresh process: the pin must reach ATen's dispatch, which reads its setting at the first kernel.
    code = (
        "import torch; from dfrobust.utils.numerics import pin_from_env; pin_from_env(); "
        "torch.ones(3).sum(); from dfrobust.utils.runtime import versions; v = versions(); "
        "print(v['cpu_capability'], v['pinned_isa'], v['threads'])"
    )
    env = {**os.environ, PIN_ENV: "avx2", "DFROBUST_THREADS": "1", "PYTHONPATH": str(SRC)}
    for key in ISA_LEVELS["avx2"]:
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["AVX2", "avx2", "1"]


def test_cli_reports_a_bad_level_as_a_one_line_error() -> None:
    env = {**os.environ, PIN_ENV: "sse4", "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-m", "dfrobust", "status", "--help"], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0  # --help exits in argparse, before the pin
    proc = subprocess.run(
        [sys.executable, "-m", "dfrobust", "status", "--run", "nonexistent-run"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "error: DFROBUST_PIN_ISA must be one of" in proc.stderr


def test_preset_key_pin_isa_is_checked_and_reaches_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from dfrobust.config_checks import validate_study_config
    from dfrobust.config import load_preset

    cfg = load_preset("tiny")
    cfg["run"]["pin_isa"] = "avx3"
    with pytest.raises(DfrobustError, match="run.pin_isa") as info:
        validate_study_config(cfg)
    assert "\n" not in str(info.value)
    cfg["run"]["pin_isa"] = "avx2"
    validate_study_config(cfg)
    # the key reaches DFROBUST_PIN_ISA and the libraries' settings (no ISA effect is relied on: the CPU check is faked)
    monkeypatch.setattr(numerics, "cpu_flags", lambda: {"avx2", "avx512f"})
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    env: dict[str, str] = {}
    pinned = numerics.pin_from_config(cfg["run"], environ=env)
    assert pinned and pinned["isa"] == "avx2" and env[PIN_ENV] == "avx2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert numerics.numerics_record()["pinned_isa"] == "avx2"  # what the stages' versions record
    assert numerics.pin_from_config({"pin_isa": "none"}, environ={}) is None and numerics.pin_from_config({}, environ={}) is None
    with pytest.raises(DfrobustError, match="contradicts the preset's run.pin_isa"):
        numerics.pin_from_config({"pin_isa": "avx512"}, environ={PIN_ENV: "avx2"})


def test_reproduce_pins_the_preset_level_before_any_stage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dfrobust.cli import main
    from dfrobust.commands import reproduce

    seen: list[object] = []

    def fake_pin(run: dict) -> None:
        seen.append(run.get("pin_isa"))
        raise DfrobustError("stopped after the pin")

    monkeypatch.setattr(reproduce, "pin_from_config", fake_pin)
    monkeypatch.setattr("dfrobust.pipeline.reproduce", lambda *a, **k: pytest.fail("a stage ran before the pin"))
    code = main(["reproduce", "--preset", "tiny", "--set", "run.pin_isa=avx2", "--run", str(tmp_path / "run")])
    assert code == 2 and seen == ["avx2"]
    assert not (tmp_path / "run" / "plan.json").exists()
    code = main(["reproduce", "--preset", "tiny", "--set", "run.pin_isa=sse4", "--run", str(tmp_path / "run2")])
    assert code == 2 and seen == ["avx2"]  # refused by the config check, before the pin
