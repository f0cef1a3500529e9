"""File input/output shared by every stage: atomic writes, JSON, CSV, lossless PNG, hashing.

Every writer here writes to a temporary name in the destination folder and renames it into
place, so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dfrobust.errors import DfrobustError

PathLike = str | os.PathLike


def require_file_path(path: PathLike, option: str = "output") -> Path:
    """``path`` as a ``Path`` if a file may be written there; a one-line error for a folder.

    A folder given where a file is expected is never replaced (and never deleted): the user
    gets ``error: --json results is a folder; give a file path``. A file on the way (``a.txt``
    in ``a.txt/b.json``) is an error too.
    """
    path = Path(path)
    if path.is_dir():
        raise DfrobustError(f"{option} {path} is a folder; give a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DfrobustError(f"{option} {path}: {parent} is a file, not a folder; give another path")
            break
    return path


#: The file by which an output folder says which dfrobust command made it (``{"written_by": KIND}``).
OWNER_FILE = ".dfrobust-owner.json"
#: The key (in a JSON file) or PNG text chunk by which a file says which dfrobust command wrote it.
WRITTEN_BY = "written_by"


def is_run_folder(folder: PathLike) -> bool:
    """Whether ``folder`` is a dfrobust run folder (``config.json``, ``plan.json`` and ``.stages``)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and (folder / "plan.json").is_file() and (folder / ".stages").is_dir()


def in_run_folder(path: PathLike) -> Path | None:
    """The dfrobust run folder that ``path`` lies in, or ``None``."""
    return next((parent for parent in Path(path).resolve().parents if is_run_folder(parent)), None)


def require_own_folder(folder: PathLike, kind: str, option: str = "--out", legacy: Sequence[str] = ()) -> Path:
    """``folder`` if command ``kind`` may write its outputs into it: absent, empty (hidden files aside), or
    marked by :data:`OWNER_FILE` as made by ``kind``; else a one-line error, so that a command never writes
    over files in a folder it did not make. Inside a run folder, a stage folder of an older version (one of
    the ``legacy`` record files, no owner file) is adopted too. Nothing is written: call
    :func:`claim_own_folder` when the work starts."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DfrobustError(f"{option} {folder} is {'a link' if folder.is_symlink() else 'a file'}; give a folder path")
    owner = folder / OWNER_FILE
    if owner.is_file():
        try:
            made_by = read_json(owner).get(WRITTEN_BY)
        except (DfrobustError, AttributeError):
            made_by = None
        if made_by != kind:
            raise DfrobustError(f"{option} {folder} was made by another command ({made_by!r}, not {kind!r}); choose a new or empty folder")
    elif folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir()):
        adopted = legacy and in_run_folder(folder) is not None and any((folder / m).is_file() for m in legacy)
        if not adopted:
            raise DfrobustError(
                f"{option} {folder} already holds other files (it is not an output folder of this command); choose a new or empty folder"
            )
    return folder


def claim_own_folder(folder: PathLike, kind: str) -> Path:
    """Create ``folder`` (checked by :func:`require_own_folder`) and mark it as made by command ``kind``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / OWNER_FILE).is_file():
        write_json(folder / OWNER_FILE, {WRITTEN_BY: kind})
    return folder


def written_by(path: PathLike) -> str | None:
    """The dfrobust command that wrote file ``path`` (a JSON object's or a PNG's ``written_by`` mark), or ``None``."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            value = json.loads(path.read_text(encoding="utf-8"))
            return value.get(WRITTEN_BY) if isinstance(value, dict) else None
        if path.suffix.lower() == ".png":
            with Image.open(path) as im:
                return getattr(im, "text", {}).get(WRITTEN_BY)
    except (OSError, ValueError):
        return None
    return None


def require_output_file(path: PathLike, kind: str, option: str) -> Path:
    """``path`` if command ``kind`` may write a file there: not a folder, not inside a dfrobust dataset or run
    folder (the file would belong to it), and either new or a file that ``kind`` wrote itself (its mark)."""
    path = require_file_path(path, option)
    if path.is_symlink():
        raise DfrobustError(f"{option} {path} is a link; give a plain file path")
    for parent in path.resolve().parents:
        if (parent / "manifest.json").is_file() or is_run_folder(parent):
            raise DfrobustError(f"{option} {path} lies inside {parent}, a dfrobust dataset or run folder; write it elsewhere")
    if path.exists() and written_by(path) != kind:
        raise DfrobustError(f"{option} {path} exists and was not written by `dfrobust {kind}`; choose a new path or remove it yourself")
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The block may create a file (or a new folder) at the temporary path; it replaces a file at
    ``path``. An existing folder at ``path`` is never replaced: that is a :class:`DfrobustError`
    raised before the block runs. On an exception the temporary file or folder is removed, and
    an ``OSError`` without a file name (a full disk while writing) gets ``path`` as its name.

    >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = require_file_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the block decides whether it is a file or a folder
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """Serialise ``obj`` to stable JSON text (sorted keys, 2-space indent, numpy/torch aware)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(to_json(obj), encoding="utf-8")
    return Path(path)


class JSONFileError(DfrobustError, ValueError):
    """A JSON file that cannot be parsed (a ``ValueError`` too, for callers that treat it as one)."""


def read_json(path: PathLike) -> Any:
    """Read a JSON file; a file that is not valid JSON is a one-line error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); restore it, or delete it and rerun") from exc
    except UnicodeDecodeError as exc:
        raise JSONFileError(f"{path} is not a UTF-8 JSON file; restore it, or delete it and rerun") from exc


def read_record(path: PathLike) -> dict[str, Any]:
    """Read a JSON file that must hold an object (a run, stage or summary record); anything else is a one-line error."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise JSONFileError(
            f"{path} holds a JSON {type(value).__name__}, not the record dfrobust wrote; restore it, or delete it and rerun"
        )
    return value


def write_csv(path: PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write dict rows as CSV atomically.

    ``columns`` fixes the first columns (and their order); keys found in rows but not in
    ``columns`` follow in first-seen order. Floats are written with full precision.
    """
    rows = list(rows)
    cols = list(columns or [])
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="raise")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_value(row.get(k, "")) for k in cols})
    return Path(path)


def _csv_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    return value


def read_csv(path: PathLike) -> list[dict[str, str]]:
    """Read a CSV file into a list of dicts (values stay strings)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Quantise float images in ``[0, 1]`` to ``uint8`` (round to nearest, clipped)."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round float images in ``[0, 1]`` to the nearest 8-bit level, staying float.

    This is exactly what saving as PNG and loading again gives, so an evaluation on
    ``quantize(x)`` is an evaluation on the stored images.
    """
    return to_uint8(x).to(x.dtype if x.is_floating_point() else torch.float32) / 255.0


def save_png(path: PathLike, image: torch.Tensor | np.ndarray) -> Path:
    """Save one image losslessly as an 8-bit RGB PNG, atomically.

    ``image`` is a float tensor ``3 x H x W`` in ``[0, 1]``, a ``uint8`` tensor ``3 x H x W``,
    or a ``uint8`` array ``H x W x 3``.
    """
    if isinstance(image, torch.Tensor):
        arr = (image if image.dtype == torch.uint8 else to_uint8(image)).permute(1, 2, 0).cpu().numpy()
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError("numpy images must be uint8 H x W x 3")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr), mode="RGB").save(tmp, format="PNG")
    return Path(path)


def load_image(path: PathLike) -> torch.Tensor:
    """Load an image file as a float tensor ``3 x H x W`` in ``[0, 1]`` (converted to RGB)."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0
