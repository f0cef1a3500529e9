"""Detector checkpoints: ``.safetensors`` weights plus a JSON sidecar. Nothing is unpickled.

The sidecar (``model.json`` beside ``model.safetensors``) records the architecture, input size,
classes, normalisation, training config, dataset manifest hash, seed, metrics, library
versions and the sha256 of the weights file. Loading checks the architecture and input size
and says clearly when they differ, and checks the sidecar against the weights: their sha256,
and the architecture and normalisation that the safetensors header records too.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from dfrobust.constants import CLASS_NAMES
from dfrobust.errors import DfrobustError
from dfrobust.models.detectors import Detector, build_detector
from dfrobust.utils.io import atomic_path, read_json, sha256_bytes, sha256_file, write_json
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
        save_file(state, str(tmp), metadata=header_fields(sidecar))
        sort_header(tmp)  # safetensors writes its header in a random order: identical models must hash identically
        sidecar["weights_sha256"] = sha256_file(tmp)
    write_json(sidecar_path(path), sidecar)
    return path


#: Sidecar fields that build the model; the safetensors header repeats them, so the weights' sha256 covers them.
BUILD_FIELDS = ("format", "arch", "normalization", "activation", "num_classes", "input_size")


def header_fields(sidecar: dict[str, Any]) -> dict[str, str]:
    """The safetensors ``__metadata__`` of a model: its :data:`BUILD_FIELDS` as strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in sidecar.items() if k in BUILD_FIELDS}


def sort_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys (same tensors, same bytes after the header)."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section stays 8-byte aligned, as safetensors writes it
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n :])


def _num_outputs(model: Detector) -> int:
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return last.out_features


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint's sidecar JSON (one-line error when the model or sidecar is missing)."""
    path = Path(path)
    if path.is_dir():
        raise DfrobustError(f"{path} is a folder; give a model file (FILE.safetensors with its FILE.json sidecar)")
    if not path.is_file():
        raise DfrobustError(f"model file {path} does not exist; train one with `dfrobust train --out {path}`")
    side = sidecar_path(path)
    if not side.is_file():
        raise DfrobustError(f"{path} has no sidecar {side.name}; dfrobust needs it to know the architecture")
    meta = read_json(side)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DfrobustError(
            f"{side} is not a dfrobust detector sidecar (format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    problem = _sidecar_problem(meta)
    if problem:
        raise DfrobustError(f"{side} {problem}; restore the sidecar or retrain the model")
    return meta


def _sidecar_problem(meta: dict[str, Any]) -> str | None:
    """What a sidecar lacks for a detector to be built from it (``None`` when nothing)."""
    for key in ("arch", "normalization"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            return f"has no {key!r}"
    size = meta.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        return f"has no valid 'input_size' ([H, W], got {size!r})"
    return None


def header_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (from the file's bytes; ``{}`` when none)."""
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
    except (struct.error, ValueError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def _check_weights(path: Path, data: bytes, meta: dict[str, Any]) -> None:
    """The sidecar must describe these weights: same sha256 (when recorded), same arch and normalisation as the header."""
    recorded = meta.get("weights_sha256")
    if recorded is None:
        raise DfrobustError(
            f"{sidecar_path(path)} has no weights_sha256, so it cannot vouch for {path.name}; restore the sidecar or retrain the model"
        )
    if sha256_bytes(data) != recorded:
        raise DfrobustError(
            f"{path} does not match the weights_sha256 of its sidecar {sidecar_path(path).name} (the weights or the sidecar "
            "were replaced or damaged); restore the pair or retrain the model"
        )
    header = header_metadata(data)
    for key, saved in header_fields(meta).items():
        if key in header and header[key] != saved:
            raise DfrobustError(
                f"{sidecar_path(path)} says {key} {saved!r} but the weights in {path.name} were saved with {header[key]!r}; "
                "restore the sidecar or retrain the model"
            )


def load_detector(
    path: str | Path,
    device: str | torch.device = "cpu",
    expect_arch: str | None = None,
    expect_input_size: tuple[int, int] | list[int] | None = None,
) -> tuple[Detector, dict[str, Any]]:
    """Load a detector in eval mode and its sidecar.

    Raises a :class:`DfrobustError` when the file is missing, is not safetensors, was saved
    for another architecture than ``expect_arch``, or for another input size than
    ``expect_input_size``, or when the sidecar does not describe the weights (another sha256,
    or another architecture or normalisation than the safetensors header records).
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
        empty=True,  # every weight comes from the file: no random init to throw away
    )
    data = Path(path).read_bytes()
    _check_weights(Path(path), data, meta)
    try:
        state = load(data)
    except (SafetensorError, ValueError) as exc:
        raise DfrobustError(f"{path} is not a readable safetensors file: {exc}") from exc
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise DfrobustError(f"{path}: weight {bad} holds NaN or Inf values (a diverged training?); retrain the model")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise DfrobustError(f"{path} does not match architecture {meta['arch']}: its weights have other shapes or names") from exc
    left = next((k for k, v in [*model.named_parameters(), *model.named_buffers()] if v.is_meta), None)
    if left is not None:  # a tensor the file does not hold and the empty build did not make
        raise DfrobustError(f"{path}: {meta['arch']} has {left!r}, which the checkpoint does not set; this is a bug, please report it")
    model.eval()
    return model.to(device), meta


def model_name(path: str | Path) -> str:
    """A detector's name in tables and folders: its file stem (``models/resnet18-lip50.safetensors`` -> ``resnet18-lip50``)."""
    return Path(path).stem
