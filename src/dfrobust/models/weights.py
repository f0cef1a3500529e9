"""Weight files without model code: read a state dict from disk, never unpickling.

A leaf of :mod:`dfrobust.models`: building a detector (``--init``) and loading a checkpoint both
read weights through it, so neither module imports the other for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from dfrobust.errors import DfrobustError


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors``, or from ``.pt``/``.pth`` with ``weights_only=True`` (no pickle code)."""
    path = Path(path)
    if not path.is_file():
        raise DfrobustError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise DfrobustError(f"{path} is not a readable safetensors file: {exc}") from exc
    try:
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        # torch's own message advises weights_only=False, which runs the file's code: never for an untrusted file
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("WeightsUnpickler error")), None)
        if why is None:
            why = (
                lines[0]
                if lines and "weights_only" not in lines[0] and "can still be loaded" not in lines[0]
                else "it holds objects other than tensors"
            )
        raise DfrobustError(
            f"{path} is not a plain state dict of tensors ({why[:200]}); save it with "
            "torch.save(model.state_dict(), ...) or as safetensors (dfrobust never unpickles code)"
        ) from None
    if not isinstance(state, dict):
        raise DfrobustError(f"{path} does not hold a state dict")
    return state
