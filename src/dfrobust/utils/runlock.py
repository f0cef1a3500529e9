"""A lock on a run folder, so that two processes never run the same stages at once.

``with run_lock(run_dir): ...`` holds an exclusive ``flock`` on ``RUN/.lock`` (which also
records the holder's PID) for the duration of the block. A second process on the same folder
gets a one-line :class:`DfrobustError` naming the PID that holds it. The kernel releases a
``flock`` when its process dies, so a lock file left by a killed run is simply taken over; a
file whose recorded process is dead but whose lock is still held (a child that inherited it)
is replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from dfrobust.errors import DfrobustError

try:
    import fcntl
except ImportError:  # Windows: the PID file alone (checked for a live process)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _holder(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def _busy(run_dir: Path, pid: int | None) -> DfrobustError:
    who = f"process {pid}" if pid else "another process"
    return DfrobustError(
        f"run folder {run_dir} is in use by {who} (another `dfrobust reproduce`?); wait for it to finish or stop it, then rerun"
    )


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the lock on ``path``, or ``None`` when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        holder = _holder(path)
        if holder and holder != os.getpid() and _pid_alive(holder):
            os.close(fd)
            return None
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock for the block (creating the folder); yields the lock file's path.

    Raises :class:`DfrobustError` naming the holder's PID when a live process holds it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = _try_lock(path)
    if fd is None:
        holder = _holder(path)
        if holder is None or _pid_alive(holder):  # no PID yet: its holder is just starting
            raise _busy(run_dir, holder)
        # the recorded process is gone but the lock is held (inherited by a child of it): a fresh file
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = _try_lock(path)
        if fd is None:
            raise _busy(run_dir, _holder(path))
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock
