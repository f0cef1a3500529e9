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
