"""Detector checkpoints: ``.safetensors`` weights plus a JSON sidecar. Nothing is unpickled.

The sidecar (``model.json`` beside ``model.safetensors``) records the architecture, input size,
classes, normalisation, training config, dataset manifest hash, seed, metrics and library
versions. Loading checks the architecture and input size and says clearly when they differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dfrobust.constants import CLASS_NAMES
from dfrobust.errors import DfrobustError
from dfrobust.models.detectors import Detector, build_detector
from dfrobust.models.weights import load_state_dict_file
from dfrobust.utils.io import atomic_path, read_json, write_json
from dfrobust.utils.runtime import versions

FORMAT = "dfrobust-detector/1"


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a weights file: ``x.safetensors`` -> ``x.json``."""
    return Path(path).with_suffix(".json")


def save_detector(model: Detector, path: str | Path, meta: dict[str, Any]) -> Path:
    """Save weights (safetensors) and sidecar (JSON) atomically; returns the weights path.

    ``meta`` must hold at least ``input_size`` (``[H, W]``); ``arch``, ``normalization``,
    ``classes``, ``format`` and ``versions`` are filled in.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise DfrobustError(f"model files end in .safetensors, got {path.name}")
    if "input_size" not in meta:
        raise ValueError("meta needs 'input_size' ([H, W])")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sidecar = {
        **meta,
        "format": FORMAT,
        "arch": model.arch,
        "normalization": model.normalization,
        "activation": getattr(model, "activation", "relu"),
        "num_classes": int(_num_outputs(model)),
        "classes": {name: i for i, name in enumerate(CLASS_NAMES)},
        "versions": meta.get("versions", versions()),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "arch": model.arch, "normalization": model.normalization})
    write_json(sidecar_path(path), sidecar)
    return path


def _num_outputs(model: Detector) -> int:
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return last.out_features


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint's sidecar JSON (one-line error when the model or sidecar is missing)."""
    path = Path(path)
    if not path.is_file():
        raise DfrobustError(f"model file {path} does not exist; train one with `dfrobust train --out {path}`")
    side = sidecar_path(path)
    if not side.is_file():
        raise DfrobustError(f"{path} has no sidecar {side.name}; dfrobust needs it to know the architecture")
    meta = read_json(side)
    if meta.get("format") != FORMAT:
        raise DfrobustError(f"{side} is not a dfrobust detector sidecar (format {meta.get('format')!r})")
    return meta


def load_detector(
    path: str | Path,
    device: str | torch.device = "cpu",
    expect_arch: str | None = None,
    expect_input_size: tuple[int, int] | list[int] | None = None,
) -> tuple[Detector, dict[str, Any]]:
    """Load a detector in eval mode and its sidecar.

    Raises a :class:`DfrobustError` when the file is missing, is not safetensors, was saved
    for another architecture than ``expect_arch``, or for another input size than
    ``expect_input_size``.
    """
    meta = read_sidecar(path)
    if expect_arch is not None and meta["arch"] != expect_arch:
        raise DfrobustError(f"{path} is a {meta['arch']} checkpoint, but {expect_arch} was expected")
    if expect_input_size is not None and list(meta["input_size"]) != list(expect_input_size):
        raise DfrobustError(
            f"{path} was trained on {meta['input_size'][0]}x{meta['input_size'][1]} images but the data is "
            f"{expect_input_size[0]}x{expect_input_size[1]}; retrain it or re-import the data with --size"
        )
    model = build_detector(
        meta["arch"],
        num_classes=int(meta.get("num_classes", 2)),
        normalization=meta["normalization"],
        activation=meta.get("activation", "relu"),
    )
    state = load_state_dict_file(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DfrobustError(f"{path} does not match architecture {meta['arch']}: its weights have other shapes or names") from exc
    model.eval()
    return model.to(device), meta


def model_name(path: str | Path) -> str:
    """A detector's name in tables and folders: its file stem (``models/resnet18-lip50.safetensors`` -> ``resnet18-lip50``)."""
    return Path(path).stem
