"""Names a user gives that become paths, and the files an option writes.

Every name that ends up as a file or folder name (a purifier, attack, role, detector card,
generator, stage or run name, from the CLI, ``--set``, a preset or a card) goes through
:func:`check_name` where it enters, and every path built from one through :func:`safe_join`, so
that no name (``..``, ``../x``, ``/abs``, ``a/b``) can reach a file outside its folder: a delete
under ``--force`` would otherwise delete the user's files.

:func:`require_own_file` is the one rule for a file an option writes (``evaluate --json``,
``data preview --out``, ``data synth --preview``, a model's sidecar): an existing file is
replaced only when it is of the kind the option writes (recognised by its content) and does not
belong to a dataset, model or run folder.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable
from pathlib import Path

from dfrobust.errors import DfrobustError

MAX_NAME = 100  # characters; a name is also a file name (most file systems allow 255 bytes)
#: What a name may hold: ASCII letters and digits, and a few marks that are safe in file names and tables.
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+()=,@ ")
NAME_HINT = "use ASCII letters, digits and - _ . + ( ) = , @ (no '/', '\\', '..' or control characters)"

#: Files that mark a folder as a dfrobust dataset, run or model store: no option writes into them.
OWNED_FOLDER_MARKERS = ("manifest.json", "plan.json", "run.json")


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot be a file or folder name, or ``None`` when it can."""
    if not isinstance(value, str) or not value:
        return "is not a non-empty name"
    if len(value) > MAX_NAME:
        return f"is {len(value)} characters long (at most {MAX_NAME})"
    if value in (".", ".."):
        return "is a folder reference, not a name"
    if "/" in value or "\\" in value or os.sep in value or (os.altsep and os.altsep in value):
        return "holds a path separator"
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        return "holds a control or invisible character"
    if not value.isascii():  # look-alikes (a fullwidth '／', a right-to-left mark) would pass any narrower test
        return "holds a character outside ASCII"
    if bad := sorted(set(value) - NAME_CHARS):
        return f"holds {''.join(bad)!r}"
    if value != value.strip():
        return "starts or ends with a space"
    if value.startswith("-"):
        return "starts with '-' (it would read as an option)"
    return None


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a safe file/folder name; else a one-line error naming ``kind`` (the option or key)."""
    problem = name_problem(value)
    if problem:
        shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:40] + "...")
        raise DfrobustError(f"{kind} {shown} {problem}; {NAME_HINT}")
    return value  # type: ignore[return-value]


def check_stage_name(kind: str, value: object) -> str:
    """A stage name (``train/vgg16``, ``dip``) or group (``attack``): one or two safe names joined by ``/``."""
    parts = value.split("/") if isinstance(value, str) else [value]
    if isinstance(value, str) and value.endswith("/") and len(parts) > 1:
        parts = parts[:-1]  # `--force attacks/` means the group, as `--force attacks`
    if len(parts) > 2:
        raise DfrobustError(f"{kind} {value!r} is not a stage name (STAGE or GROUP/NAME); see `dfrobust status --run RUN`")
    for part in parts:
        if name_problem(part):
            raise DfrobustError(f"{kind} {value!r} is not a stage name: {part!r} {name_problem(part)}; see `dfrobust status --run RUN`")
    return value  # type: ignore[return-value]


def safe_join(parent: str | os.PathLike, *names: str) -> Path:
    """``parent / names...``, refused (one-line error) unless the resolved result lies under ``parent``.

    The guard behind :func:`check_name`: a symlink or a name that slipped past the checks still
    cannot make a path (to write or delete) outside its folder.
    """
    parent = Path(parent)
    path = parent.joinpath(*names)
    root, full = parent.resolve(), path.resolve()
    if full == root or root not in full.parents:
        raise DfrobustError(f"{'/'.join(names)!r} leads outside {parent} (to {full}); {NAME_HINT}")
    return path


def owning_folder(path: Path) -> Path | None:
    """The dataset, run or model folder ``path`` lies in (a marker file in one of its parents), or ``None``."""
    for parent in path.resolve().parents:
        if any((parent / m).is_file() for m in OWNED_FOLDER_MARKERS):
            return parent
    return None


def read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or ``None`` when it is not one (not JSON, a list, unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def require_own_file(
    path: str | os.PathLike,
    option: str,
    is_own: Callable[[Path], bool],
    what: str,
    inside_ok: bool = False,
) -> Path:
    """``path`` if the option may write there; else a one-line error (before any work).

    Refused: a folder; a file on the way; an existing file that ``is_own`` does not recognise as
    ``what`` (a file dfrobust wrote with this option); unless ``inside_ok``, a path inside a
    dataset, model or run folder (it would replace that folder's own files).
    """
    from dfrobust.utils.io import require_file_path

    path = require_file_path(path, option)
    if path.is_symlink():
        raise DfrobustError(f"{option} {path} is a symbolic link; give a plain file path")
    if not inside_ok and (owner := owning_folder(path)) is not None:
        raise DfrobustError(f"{option} {path} lies inside {owner}, a dfrobust dataset, model or run folder; write it elsewhere")
    if path.exists() and not is_own(path):
        raise DfrobustError(f"{option} {path} exists and is not {what} dfrobust wrote; remove it or give a new file path")
    return path


def is_png_file(path: Path) -> bool:
    """A PNG file (what the preview options write)."""
    try:
        with path.open("rb") as fh:
            return fh.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False
