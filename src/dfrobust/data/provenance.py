"""How a dataset folder was made, and whether an existing one already answers a request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dfrobust.data.manifest import MANIFEST
from dfrobust.utils.io import read_json, to_json


def is_dataset_folder(path: str | Path) -> bool:
    """Whether ``path`` is a finished dataset folder (it holds ``manifest.json``)."""
    return (Path(path) / MANIFEST).is_file()


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose output lands in the pixels (recorded in ``created_by``)."""
    import numpy
    import PIL
    import torch

    import dfrobust

    return {"dfrobust": dfrobust.__version__, "numpy": numpy.__version__, "torch": torch.__version__, "pillow": PIL.__version__}


def _comparable(created_by: dict[str, Any]) -> dict[str, Any]:
    # compare through JSON (tuples become lists) and ignore library versions
    return {k: v for k, v in json.loads(to_json(created_by)).items() if k != "versions"}


def finished_dataset(out_dir: str | Path, created_by: dict[str, Any]) -> Path | None:
    """``out_dir`` when it already holds a dataset made with the same ``created_by`` (so the stage can be skipped)."""
    out = Path(out_dir)
    if not is_dataset_folder(out):
        return None
    try:
        made_by = read_json(out / MANIFEST).get("created_by", {})
    except (OSError, ValueError, AttributeError):
        return None
    return out if _comparable(made_by) == _comparable(created_by) else None
