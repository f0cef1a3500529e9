"""Do CPU numerics move trained weights? One epoch of a ResNet-18 under default and pinned instruction sets.

Synthetic faces are made once (``dfrobust data synth``), then the same ``dfrobust train`` runs in
a fresh subprocess per setup:

* ``default``: whatever the host picks (oneDNN, MKL and ATen choose kernels by the CPU);
* ``avx2``: ``DFROBUST_PIN_ISA=avx2`` (oneDNN AVX2, MKL_CBWR=AVX2, ATen avx2; fixed threads);
* ``avx512``: ``DFROBUST_PIN_ISA=avx512`` (skipped on a CPU without AVX-512);
* ``avx2-again``: a second AVX2 run, to show that a pinned run repeats exactly.

Every setup uses the same thread count (``--threads``: pinned runs through ``DFROBUST_THREADS``,
the default run through ``OMP_NUM_THREADS``), so the ISA is the only difference. Prints one JSON line per setup (seconds of training) and one per pair
(the largest absolute weight difference; 0.0 means bit-identical). The weight differences do
not depend on machine load; the seconds do: measure them on an idle machine::

    .venv/bin/python benchmarks/host_numerics.py --images 400 --size 32 --threads 2
    .venv/bin/python benchmarks/host_numerics.py --smoke     # tiny: checks the script, measures nothing
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

from dfrobust.utils.numerics import ISA_LEVELS, PIN_ENV, THREADS_ENV, cpu_flags


def _env(pin: str | None, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ISA_LEVELS["avx2"] and k != PIN_ENV}
    env.update({THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads), "DFROBUST_QUIET": "1"})
    if pin:
        env[PIN_ENV] = pin
    return env


def _cli(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dfrobust", "-q", *args], env=env, check=True)
    return time.perf_counter() - start


def max_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between two checkpoints' float tensors (same keys)."""
    wa, wb = load_file(str(a)), load_file(str(b))
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].is_floating_point())


def main() -> None:
    """Make the data, train once per setup in a subprocess, print seconds and pairwise weight differences."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", help="folder for data and models (default: a temporary folder)")
    ap.add_argument("--smoke", action="store_true", help="tiny: 40 images of 16 px, the tiny detector")
    args = ap.parse_args()
    if args.smoke:
        args.images, args.size, args.arch = 40, 16, "tiny"
    work = Path(args.work or tempfile.mkdtemp(prefix="host-numerics-"))
    data = work / "data"
    if not (data / "manifest.json").exists():
        _cli(
            ["data", "synth", "--n", str(args.images), "--size", str(args.size), "--out", str(data), "--seed", "0"],
            _env(None, args.threads),
        )
    flags = cpu_flags() or set()
    setups = [("default", None), ("avx2", "avx2"), ("avx2-again", "avx2")]
    if "avx512f" in flags:
        setups.insert(2, ("avx512", "avx512"))
    models = {}
    for name, pin in setups:
        out = work / f"{name}.safetensors"
        seconds = _cli(["train", "--data", str(data), "--out", str(out), "--arch", args.arch, "--epochs", "1",
                        "--seed", "0", "--device", "cpu", "--force"], _env(pin, args.threads))  # fmt: skip
        models[name] = out
        print(json.dumps({"setup": name, "pin": pin or "none", "threads": args.threads, "seconds": round(seconds, 1)}), flush=True)
    for a, b in itertools.combinations(models, 2):
        print(json.dumps({"pair": f"{a} vs {b}", "max_abs_weight_difference": max_difference(models[a], models[b])}), flush=True)
    print(json.dumps({"work": str(work), "images": args.images, "size": args.size, "arch": args.arch}), flush=True)


if __name__ == "__main__":
    main()
