"""One rule for every name a user gives that becomes part of a path.

A purifier, attack, role, card, generator or stage name ends up as a folder or file name under a
run (``RUN/adaptive/<purifier>``, ``RUN/curves/<card name>``). :func:`check_name` is applied where
names enter (the CLI, ``--set``, presets, detector cards) and :func:`safe_join` where paths are
joined, so that no name can point outside its parent folder: no separators, no ``.``/``..``, no
absolute paths, no control characters, and a length limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dfrobust.errors import DfrobustError

#: Longest name accepted (file systems allow 255 bytes; a name is often combined with a prefix).
MAX_NAME_LENGTH = 100


def name_problem(value: Any) -> str | None:
    """What makes ``value`` unusable as one path component, or ``None`` when it is safe."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty text"
    if len(value) > MAX_NAME_LENGTH:
        return f"is {len(value)} characters long (at most {MAX_NAME_LENGTH})"
    if value in (".", ".."):
        return "cannot be '.' or '..'"
    if "/" in value or "\\" in value:
        return "cannot contain '/' or '\\' (a name, not a path)"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "cannot contain control characters"
    if value != value.strip():
        return "cannot start or end with spaces"
    return None


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a safe name; else a one-line :class:`DfrobustError` naming ``what`` (e.g. ``card name``)."""
    problem = name_problem(value)
    if problem:
        raise DfrobustError(f"{what} {_show(value)} {problem}; use letters, digits, '-', '_' or '.'")
    return value


def check_names(values: Iterable[Any], what: str) -> list[str]:
    """Every name of ``values`` checked with :func:`check_name`."""
    return [check_name(v, what) for v in values]


def safe_join(parent: str | Path, *names: str) -> Path:
    """``parent/name1/name2...``, each name checked, and the result (symlinks resolved) inside ``parent``."""
    parent = Path(parent)
    path = parent
    for name in names:
        path = path / check_name(name, "name")
    if not is_inside(path, parent):
        raise DfrobustError(f"{path} leads outside {parent} (a link?); remove the link or choose another name")
    return path


def is_inside(path: str | Path, parent: str | Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies strictly under ``parent`` (symlinks resolved)."""
    root = Path(parent).resolve()
    target = Path(path).resolve()
    return target != root and target.is_relative_to(root)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"
