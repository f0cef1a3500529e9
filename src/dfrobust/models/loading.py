"""One entry point for "a model argument": a dfrobust checkpoint or a detector card.

Every command that takes a model (``evaluate --model``, ``attack --source/--target``,
``purify --model``) goes through :func:`load_model_arg`, so each accepts both kinds::

    models/resnet18.safetensors   a dfrobust checkpoint (weights + JSON sidecar)
    detectors/mine.toml           a detector card (see :mod:`dfrobust.models.cards`)

Anything else (a pickled ``.pth``/``.pt`` module above all) is refused with a one-line error:
dfrobust never unpickles code and could not know the file's input and output conventions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models.cards import load_card, read_card
from dfrobust.models.checkpoint import load_detector, model_name, read_sidecar
from dfrobust.utils.io import sha256_file

CARD_SUFFIX = ".toml"
CHECKPOINT_SUFFIX = ".safetensors"


def is_card(path: str | Path) -> bool:
    """Whether a model argument is a detector card (by its suffix)."""
    return Path(path).suffix.lower() == CARD_SUFFIX


def _refuse(path: Path) -> DfrobustError:
    return DfrobustError(
        f"{path} is neither a dfrobust model (.safetensors with a .json sidecar) nor a detector card (.toml); "
        "for your own detector write a detector card (see `dfrobust card check --help`)"
    )


def model_display_name(path: str | Path) -> str:
    """A model argument's name in tables and folders, without building it: a card's ``name`` (default its
    stem), a checkpoint's file stem."""
    path = Path(path)
    if is_card(path):
        return read_card(path).name
    if path.suffix.lower() != CHECKPOINT_SUFFIX:
        raise _refuse(path)
    return model_name(path)


def model_input_size(path: str | Path) -> tuple[int, int] | None:
    """The ``(H, W)`` a model argument must be fed, without building it: a checkpoint's trained size;
    ``None`` for a card (it resizes inside, so it takes any size)."""
    path = Path(path)
    if is_card(path):
        return None
    if path.suffix.lower() != CHECKPOINT_SUFFIX:
        raise _refuse(path)
    size = read_sidecar(path)["input_size"]
    return int(size[0]), int(size[1])


def load_model_arg(
    path: str | Path,
    device: str | torch.device = "cpu",
    expect_input_size: tuple[int, int] | list[int] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model argument in eval mode: a detector card (``.toml``) or a dfrobust checkpoint (``.safetensors``).

    Args:
        path: the card or the checkpoint.
        device: where the model goes.
        expect_input_size: for a checkpoint, the data's ``[H, W]`` (a one-line error when it was
            trained at another size). Cards resize inside, so they take any size and skip this check.

    Returns:
        ``(model, meta)``: the model maps ``N x 3 x H x W`` pixels in ``[0, 1]`` to 2 logits
        (fake = 0, real = 1). ``meta`` always holds ``kind`` (``"card"`` or ``"dfrobust"``),
        ``name`` (card name or file stem), ``arch`` and ``sha256`` (the model's identity: the
        checkpoint file's hash, or a card's hash of card + weights + code), plus the sidecar or
        the card's resolved convention.

    >>> model, meta = load_model_arg("detectors/mine.toml")  # doctest: +SKIP
    """
    path = Path(path)
    if is_card(path):
        return load_card(path, device)
    if path.suffix.lower() != CHECKPOINT_SUFFIX:
        raise _refuse(path)
    model, meta = load_detector(path, device, expect_input_size=expect_input_size)
    return model, {**meta, "kind": "dfrobust", "name": model_name(path), "sha256": sha256_file(path)}
