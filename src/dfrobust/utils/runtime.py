"""Runtime helpers: device choice, seeding, library versions, progress bars."""

from __future__ import annotations

import logging
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Iterator
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
    from dfrobust.utils.numerics import numerics_record

    numerics = numerics_record()  # which host numerics made the numbers (see utils/numerics.py)
    info.update({k: numerics[k] for k in ("cpu", "cpu_capability", "threads", "pinned_isa")})
    if torch.cuda.is_available():
        info["cuda"] = str(torch.version.cuda)
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


#: Progress goes through this logger when stderr is not a terminal; setting its level above
#: INFO (the CLI's ``--quiet`` does) turns progress off, bars included.
PROGRESS_LOG = logging.getLogger("dfrobust.progress")
#: Seconds between two plain progress lines (``DFROBUST_PROGRESS_EVERY`` changes it).
PROGRESS_EVERY = 10.0


class PlainProgress:
    """tqdm's interface, reported as one plain log line every few seconds (for pipes and log files).

    No carriage returns or cursor escapes: each report is a whole line through
    :data:`PROGRESS_LOG` (``synth: 120/400 img (30%), 12 s, ~28 s left``), plus a last one
    when a bar that reported closes.
    """

    def __init__(self, iterable: Iterable[Any] | None = None, total: float | None = None, desc: str | None = None,
                 unit: str = "it", initial: float = 0, disable: bool | None = False, every: float | None = None,
                 **_: Any) -> None:  # fmt: skip
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.n = total, desc or "progress", unit, initial
        self.disable = bool(disable)
        self.every = every if every is not None else float(os.environ.get("DFROBUST_PROGRESS_EVERY", PROGRESS_EVERY))
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._reported = False
        self._shown: tuple[float, str] | None = None  # (count, postfix) of the last line
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        text = f"{self.desc}: {self.n:g}"
        if self.total:
            text += f"/{self.total:g} {self.unit} ({100 * self.n / self.total:.0f}%), {elapsed:.0f} s"
            if 0 < self.n < self.total:
                text += f", ~{elapsed * (self.total - self.n) / self.n:.0f} s left"
        else:
            text += f" {self.unit}, {elapsed:.0f} s"
        return text + (f" [{self.postfix}]" if self.postfix else "")

    def _report(self, force: bool = False) -> None:
        if self.disable:
            return
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            self._reported = True
            self._shown = (self.n, self.postfix)
            PROGRESS_LOG.info(self._line())

    def update(self, n: float = 1) -> None:
        """Advance by ``n``; reports when the interval has passed."""
        self.n += n
        self._report()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Extra ``key=value`` fields shown at the end of the next line."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change the label."""
        self.desc = desc or self.desc

    def refresh(self) -> None:
        """Nothing to redraw (lines are reported on the interval)."""

    def close(self) -> None:
        """A last line when this bar reported before (so a log shows that it finished), unless its last line said it all."""
        if not self._closed and self._reported and self._shown != (self.n, self.postfix):
            self._report(force=True)
        self._closed = True


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_note(text: str) -> None:
    """One line beside the progress bars (a budget, an ETA), silenced as they are (``--quiet``, ``DFROBUST_QUIET=1``)."""
    if os.environ.get("DFROBUST_QUIET") != "1" and PROGRESS_LOG.isEnabledFor(logging.INFO):
        PROGRESS_LOG.info(text)


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm | PlainProgress:
    """A progress bar: tqdm on a terminal (or in a notebook), else :class:`PlainProgress` lines.

    Silenced when ``DFROBUST_QUIET=1`` or when :data:`PROGRESS_LOG`'s level is set above INFO
    (the CLI's ``--quiet``).
    """
    if os.environ.get("DFROBUST_QUIET") == "1" or PROGRESS_LOG.level > logging.INFO:
        kwargs["disable"] = True
    if not (_stderr_is_terminal() or _in_notebook()):
        return PlainProgress(iterable, **kwargs)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
