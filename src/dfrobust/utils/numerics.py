"""Host-independent CPU numerics: pin the instruction set and thread count that torch computes with.

On x86-64 CPUs three libraries pick their kernels by the instruction set the CPU has: oneDNN
(convolutions; ``ONEDNN_MAX_CPU_ISA``), MKL (matrix products; ``MKL_CBWR``, conditional
numerical reproducibility) and ATen's own vectorised kernels (``ATEN_CPU_CAPABILITY``). An
AVX-512 host and an AVX2 host therefore sum in different orders and train to different
weights from the same seed; so does the same host with another thread count (reductions are
split per thread). Pinning all three to one level and fixing the thread count makes a CPU run
give the same numbers on every host that has that level.

All three are read once, lazily, when the first kernel runs, so :func:`pin_numerics` works
after ``import torch`` but must run before any tensor computation; the CLI calls
:func:`pin_from_env` first thing (``DFROBUST_PIN_ISA=avx2 dfrobust reproduce ...``), and ``reproduce``
calls :func:`pin_from_config` for a preset's ``[run] pin_isa = "avx2"``.
:func:`numerics_record` says what a run computed with, for its config and versions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from dfrobust.errors import DfrobustError

log = logging.getLogger(__name__)

#: Environment variable naming the level to pin (``avx2`` or ``avx512``); unset or empty: no pin.
PIN_ENV = "DFROBUST_PIN_ISA"
#: Environment variable with the intra-op thread count of a pinned run.
THREADS_ENV = "DFROBUST_THREADS"
#: Threads of a pinned run when ``DFROBUST_THREADS`` is not set: small enough for any host, fixed on all.
DEFAULT_PINNED_THREADS = 2
#: Per level, the library settings that pin it, and the CPU flag a host needs for it.
ISA_LEVELS: dict[str, dict[str, str]] = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_CBWR": "AVX512", "ATEN_CPU_CAPABILITY": "avx512"},
}
_CPU_FLAG = {"avx2": "avx2", "avx512": "avx512f"}
#: What this process pinned (``None`` until :func:`pin_numerics` ran).
_PINNED: dict[str, object] | None = None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags (Linux), or ``None`` where they cannot be read."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def pin_numerics(isa: str, threads: int | None = None, environ: MutableMapping[str, str] | None = None) -> dict[str, object]:
    """Pin oneDNN, MKL and ATen to instruction-set level ``isa`` and torch to ``threads`` intra-op threads.

    Settings the user already exported are kept when they agree, and are a one-line error when
    they contradict the level. A level the CPU lacks is an error too (the libraries would
    silently fall back and the pin would not hold). Returns what was pinned.
    """
    env = os.environ if environ is None else environ
    level = isa.lower()
    if level not in ISA_LEVELS:
        raise DfrobustError(f"{PIN_ENV} must be one of {', '.join(ISA_LEVELS)}, got {isa!r}")
    flags = cpu_flags()
    if flags is not None and _CPU_FLAG[level] not in flags:
        raise DfrobustError(f"this CPU ({cpu_model()}) lacks {_CPU_FLAG[level]}: pin a lower level ({PIN_ENV}=avx2)")
    for key, value in ISA_LEVELS[level].items():
        if env.get(key, value).upper() != value.upper():
            raise DfrobustError(f"{key}={env[key]} contradicts {PIN_ENV}={level} (which sets {key}={value}); unset one")
        env[key] = value
    n = threads if threads is not None else int(env.get(THREADS_ENV) or DEFAULT_PINNED_THREADS)
    if n < 1:
        raise DfrobustError(f"{THREADS_ENV} must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)
    global _PINNED
    _PINNED = {"isa": level, "threads": n, **ISA_LEVELS[level]}
    log.debug("pinned CPU numerics: %s", _PINNED)
    return dict(_PINNED)


def pin_from_env(environ: MutableMapping[str, str] | None = None) -> dict[str, object] | None:
    """:func:`pin_numerics` at the level ``DFROBUST_PIN_ISA`` names; ``None`` (nothing pinned) when unset."""
    env = os.environ if environ is None else environ
    level = env.get(PIN_ENV, "").strip()
    return pin_numerics(level, environ=env) if level else None


def pin_from_config(run: Mapping[str, Any], environ: MutableMapping[str, str] | None = None) -> dict[str, object] | None:
    """:func:`pin_numerics` at a preset's ``[run] pin_isa`` level (``"avx2"``, ``"avx512"``; ``"none"`` or absent: no pin).

    The level is also put in ``DFROBUST_PIN_ISA``, so the processes a run starts (``--devices``
    workers, torchrun ranks) pin the same. A ``DFROBUST_PIN_ISA`` exported with another level is
    a one-line error. Call it before any tensor computation (``reproduce`` does, after checking
    the config).
    """
    env = os.environ if environ is None else environ
    level = str(run.get("pin_isa") or "none").strip().lower()
    if level == "none":
        return None
    exported = env.get(PIN_ENV, "").strip().lower()
    if exported and exported != level:
        raise DfrobustError(f"{PIN_ENV}={exported} contradicts the preset's run.pin_isa = {level!r}; unset one")
    env[PIN_ENV] = level
    if _PINNED is not None and _PINNED.get("isa") == level:
        return dict(_PINNED)
    return pin_numerics(level, environ=env)


def numerics_record() -> dict[str, str]:
    """What this process computes with: pinned level (or ``none``), ATen's kernels, threads, CPU, library settings."""
    import torch

    record = {
        "pinned_isa": str(_PINNED["isa"]) if _PINNED else "none",
        "cpu": cpu_model(),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": str(torch.get_num_threads()),
    }
    for key in ISA_LEVELS["avx2"]:
        record[key] = os.environ.get(key, "")
    return record
