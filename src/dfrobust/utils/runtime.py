"""Runtime helpers: device choice, seeding, library versions, progress bars."""

from __future__ import annotations

import os
import platform
import random
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from dfrobust.errors import DfrobustError

T = TypeVar("T")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device; ``auto`` picks CUDA when present."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DfrobustError(f"--device {name} was asked for but no CUDA GPU is visible; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DfrobustError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def versions() -> dict[str, str]:
    """Versions of Python, the key libraries and dfrobust, for provenance sidecars."""
    import torchvision

    import dfrobust

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "dfrobust": dfrobust.__version__,
    }
    if torch.cuda.is_available():
        info["cuda"] = str(torch.version.cuda)
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm progress bar (to stderr); silenced when ``DFROBUST_QUIET=1``."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    if os.environ.get("DFROBUST_QUIET") == "1":
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
