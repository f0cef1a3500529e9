"""Detector cards: a small TOML file that turns a user's own detector into dfrobust's convention.

A card says where the network comes from, which weights it takes, how it wants its input and
what its output means::

    source = "python:mypkg.nets:build_detector"   # or torchvision:NAME, timm:NAME, deployed:NAME, dfrobust:FILE.safetensors
    weights = "weights.pth"                        # safetensors or a state dict (torch.load weights_only=True)
    strict = true                                  # every state-dict key must match
    input_size = [224, 224]                        # resize inside the model (bilinear, antialiased)
    normalization = "imagenet"                     # "none", "imagenet" or {mean = [...], std = [...]}
    output = "logit"                               # "logits" (N x C), "logit" (N x 1 or N), "probs" (N x C)
    fake_index = 1                                 # logits/probs: the fake column; logit: 1 if sigmoid(z) = P(fake)
    name = "my-xception"                           # label in tables (default: the card's file stem)
    face_crop = true                               # classify DeepfakeBench's aligned face crop (dlib; faceswap extra)

:func:`load_card` builds the network, loads the weights, wraps it in a :class:`CardDetector`
(pixels in ``[0, 1]`` at any size in, 2 logits fake = 0 / real = 1 out, differentiable end to
end) and runs a probe batch; every mistake is a one-line :class:`DfrobustError` before any work.
Paths in a card are relative to the card's folder, and so is a ``python:`` source's module (found
there first, then in the working directory and on ``PYTHONPATH``). A ``python:`` source is code
that runs: its module is imported (and runs whatever it holds) when the card is loaded, so use
only cards whose code you trust, as you would any Python module. Sources are a registry
(:func:`register_source`), so a new kind of source is one function. The wrapper, its option
checks and the probe are :mod:`dfrobust.models.wrap`'s, shared with :func:`~dfrobust.models.wrap.wrap_detector`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from dfrobust.constants import FAKE
from dfrobust.errors import DfrobustError
from dfrobust.models import deployed
from dfrobust.models.card_weights import _fail, load_card_weights
from dfrobust.models.checkpoint import load_detector, read_sidecar
from dfrobust.models.wrap import OUTPUTS as OUTPUTS  # re-exported: the wrapper and its checks live in models/wrap.py
from dfrobust.models.wrap import PROB_FLOOR as PROB_FLOOR
from dfrobust.models.wrap import PROBE_SIZE, check_options, probe, probe_warnings
from dfrobust.models.wrap import CardDetector as CardDetector
from dfrobust.models.wrap import to_two_logits as to_two_logits
from dfrobust.utils.io import sha256_bytes, sha256_file, to_json
from dfrobust.utils.names import name_problem

#: Every key a card may hold; the required ones depend on the source (see :func:`read_card`).
CARD_KEYS = ("source", "weights", "strict", "input_size", "normalization", "output", "fake_index", "name", "face_crop")
#: Keys a card must hold unless its source is ``dfrobust:`` (which records them itself).
REQUIRED_KEYS = ("source", "normalization", "output", "fake_index")
HELP = "see `dfrobust card check --help`"


@dataclass(frozen=True)
class DetectorCard:
    """A parsed, type-checked card (nothing built yet).

    Attributes:
        path: the card file.
        kind, spec: the source split at its first ``:`` (``"torchvision"``, ``"resnet50"``).
        weights: absolute path of the weights file, or ``None``.
        strict: every state-dict key must match.
        input_size: ``(H, W)`` the model is fed, or ``None`` (images reach it at their own size).
        mean, std: normalisation per channel, or ``None`` for none.
        normalization: ``"none"``, ``"imagenet"`` or ``"custom"``.
        output: ``"logits"``, ``"logit"`` or ``"probs"``.
        fake_index: the column (or sigmoid direction) that means fake.
        name: the model's name in tables.
        face_crop: crop the face inside the model first (:class:`dfrobust.models.face_crop.FaceCrop`).
    """

    path: Path
    kind: str
    spec: str
    weights: Path | None
    strict: bool
    input_size: tuple[int, int] | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    normalization: str
    output: str
    fake_index: int
    name: str
    face_crop: bool = False

    @property
    def source(self) -> str:
        """The source as written: ``kind:spec``."""
        return f"{self.kind}:{self.spec}"

    @property
    def checkpoint(self) -> Path:
        """A ``dfrobust:`` source's checkpoint: relative to the card's folder, as its weights are (read, never written)."""
        return self.path.parent / self.spec

    @property
    def num_outputs(self) -> int:
        """Outputs a library architecture (``torchvision:``, ``timm:``) is built with: 1 for ``logit``, else 2."""
        return 1 if self.output == "logit" else 2


def read_card(path: str | Path) -> DetectorCard:
    """Parse and check a card: known keys, required keys present, every value of the right type.

    Raises a one-line :class:`DfrobustError` naming the card and the key. Builds nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise DfrobustError(f"detector card {path} does not exist; {HELP}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid TOML: {exc}") from exc
    unknown = sorted(set(raw) - set(CARD_KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}; a card has {', '.join(CARD_KEYS)} ({HELP})")
    source = raw.get("source")
    if not isinstance(source, str) or ":" not in source:
        raise _fail(path, f'`source` must be "python:module:factory", "torchvision:NAME", "timm:NAME" or "dfrobust:FILE", got {source!r}')
    kind, spec = source.split(":", 1)
    if kind not in SOURCES:
        raise _fail(path, f"unknown source kind {kind!r}; use one of {', '.join(sorted(SOURCES))}")
    if kind == "deployed":  # a deployed family supplies how it reads pixels and what its output means
        try:
            raw = {**deployed.card_defaults(spec), **raw}
        except DfrobustError as exc:
            raise _fail(path, str(exc)) from exc
    dfrobust_source = kind == "dfrobust"
    missing = [k for k in REQUIRED_KEYS if k not in raw and not dfrobust_source]
    if missing:
        raise _fail(path, f"missing key(s) {', '.join(missing)}; they say how the model reads pixels and what its output means ({HELP})")

    folder = path.parent
    weights = raw.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise _fail(path, f"`weights` must be a file path, got {weights!r}")
    if dfrobust_source and weights is not None:
        raise _fail(path, "a dfrobust: source carries its own weights; drop `weights`")
    strict = raw.get("strict", True)
    if not isinstance(strict, bool):
        raise _fail(path, f"`strict` must be true or false, got {strict!r}")
    try:  # the same checks as wrap_detector's arguments
        options = check_options(
            raw.get("output", "logits"), raw.get("fake_index", FAKE), None, raw.get("input_size"), raw.get("normalization", "none")
        )
    except DfrobustError as exc:
        raise _fail(path, str(exc)) from None
    output, fake_index, normalization = options.output, options.fake_index, options.normalization
    if dfrobust_source and (output, fake_index, normalization) != ("logits", FAKE, "none"):
        raise _fail(
            path,
            "a dfrobust: model already gives logits with fake = 0 and normalises inside; drop `output`, `fake_index` and `normalization`",
        )
    face_crop = raw.get("face_crop", False)
    if not isinstance(face_crop, bool):
        raise _fail(path, f"`face_crop` must be true or false, got {face_crop!r}")
    name = raw.get("name", path.stem)
    if problem := name_problem(name.strip() if isinstance(name, str) else name):
        # the name becomes a folder of the run (RUN/curves/<name>): never a path
        raise _fail(path, f"`name` {name!r} {problem}")
    return DetectorCard(
        path=path,
        kind=kind,
        spec=spec,
        weights=(folder / weights) if weights else None,
        strict=strict,
        input_size=options.input_size,
        mean=options.mean,
        std=options.std,
        normalization=normalization,
        output=output,
        fake_index=fake_index,
        name=name.strip(),
        face_crop=face_crop,
    )


#: Source kind -> builder ``(spec, card) -> nn.Module``; filled by :func:`register_source`.
SOURCES: dict[str, Callable[[str, DetectorCard], nn.Module]] = {}


def register_source(kind: str) -> Callable[[Callable[[str, DetectorCard], nn.Module]], Callable[[str, DetectorCard], nn.Module]]:
    """Decorator: make ``kind:SPEC`` a card source built by the decorated function."""

    def deco(fn: Callable[[str, DetectorCard], nn.Module]) -> Callable[[str, DetectorCard], nn.Module]:
        SOURCES[kind] = fn
        return fn

    return deco


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextlib.contextmanager
def card_import_path(card: DetectorCard) -> Iterator[Path]:
    """While a card's ``python:`` module is imported: the card's folder first on ``sys.path``, then the working
    directory (the console script does not put it there), then the usual path. Yields the card's folder."""
    folder = card.path.parent.resolve()
    cwd = os.getcwd()
    add_cwd = cwd not in sys.path and "" not in sys.path
    sys.path.insert(0, str(folder))
    if add_cwd:
        sys.path.insert(1, cwd)
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        if add_cwd:
            sys.path.remove(cwd)


def _shadowed(module_name: str, folder: Path) -> str | None:
    """Where an already imported module of the same top-level name lives, when the card's folder holds another one."""
    top = module_name.split(".")[0]
    if not ((folder / f"{top}.py").is_file() or (folder / top).is_dir()):
        return None
    module = sys.modules.get(top)
    places = [getattr(module, "__file__", None), *list(getattr(module, "__path__", None) or [])]
    places = [Path(p).resolve() for p in places if p]
    if module is None or not places or any(p.is_relative_to(folder) for p in places):
        return None
    return str(places[0])


@register_source("python")
def _python_source(spec: str, card: DetectorCard) -> nn.Module:
    """``python:package.module:factory``: import from the card's folder (else the working directory or PYTHONPATH),
    call ``factory()``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise _fail(card.path, f'a python source is "python:module:factory", got "python:{spec}"')
    with card_import_path(card) as folder:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise _fail(
                card.path,
                f"cannot import {module_name} ({_first_line(exc)}); put it in the card's folder {folder} or add its folder to PYTHONPATH",
            ) from exc
        except SystemExit as exc:  # the user's module ran sys.exit on import: that is a failed card, not a finished command
            raise _fail(card.path, f"importing {module_name} called sys.exit({exc.code!r})") from None
    if where := _shadowed(module_name, folder):
        raise _fail(
            card.path,
            f"{module_name.split('.')[0]} is already imported from {where}, not from the card's folder; "
            "rename the card's module or load the card in a fresh process",
        )
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _fail(card.path, f"{module_name} has no {attr}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise _fail(card.path, f"{module_name}:{attr} is neither a torch.nn.Module nor a function that returns one")
    try:
        model = obj()
    except SystemExit as exc:  # a factory that exits must not end `card check` with exit 0
        raise _fail(card.path, f"{module_name}:{attr}() called sys.exit({exc.code!r})") from None
    except Exception as exc:  # noqa: BLE001 - the user's factory may raise anything
        raise _fail(card.path, f"{module_name}:{attr}() failed: {_first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise _fail(card.path, f"{module_name}:{attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


@register_source("torchvision")
def _torchvision_source(spec: str, card: DetectorCard) -> nn.Module:
    """``torchvision:NAME``: the architecture with ``card.num_outputs`` outputs, random weights."""
    import torchvision

    if spec not in torchvision.models.list_models(module=torchvision.models):
        raise _fail(card.path, f"torchvision has no classifier {spec!r} (see torchvision.models.list_models())")
    try:
        return torchvision.models.get_model(spec, weights=None, num_classes=card.num_outputs)
    except Exception as exc:  # noqa: BLE001
        raise _fail(card.path, f"cannot build torchvision:{spec}: {_first_line(exc)}") from exc


@register_source("timm")
def _timm_source(spec: str, card: DetectorCard) -> nn.Module:
    """``timm:NAME``: the architecture with ``card.num_outputs`` outputs (the optional ``timm`` extra)."""
    try:
        import timm
    except ImportError as exc:
        raise _fail(card.path, "a timm: source needs timm; install it with `pip install 'dfrobust[timm]'` (or `pip install timm`)") from exc
    try:
        return timm.create_model(spec, pretrained=False, num_classes=card.num_outputs)
    except Exception as exc:  # noqa: BLE001 - timm raises RuntimeError for an unknown name
        raise _fail(card.path, f"cannot build timm:{spec}: {_first_line(exc)}") from exc


@register_source("deployed")
def _deployed_source(spec: str, card: DetectorCard) -> nn.Module:
    """``deployed:NAME``: a deployed detector family (:mod:`dfrobust.models.deployed`), random weights."""
    try:
        return deployed.build_family(spec, card.num_outputs)
    except DfrobustError as exc:
        raise _fail(card.path, str(exc)) from exc


@register_source("dfrobust")
def _dfrobust_source(spec: str, card: DetectorCard) -> nn.Module:
    """``dfrobust:FILE.safetensors``: a dfrobust checkpoint (path relative to the card)."""
    path = card.checkpoint
    if path.suffix != ".safetensors":
        raise _fail(card.path, f"a dfrobust: source is a .safetensors checkpoint, got {spec!r}")
    model, _ = load_detector(path)
    return model


def card_identity(path: str | Path) -> str:
    """A hash of a card, its weights and (for ``python:`` sources) the module file, without building the model:
    what a study's cache keys on."""
    import importlib.util

    card = read_card(path)
    parts: dict[str, Any] = {"card": sha256_file(card.path)}
    if card.weights is not None and card.weights.is_file():
        parts["weights"] = sha256_file(card.weights)
    if card.kind == "dfrobust" and card.checkpoint.is_file():
        parts["checkpoint"] = sha256_file(card.checkpoint)
    if card.kind == "python":
        try:
            with card_import_path(card):
                spec = importlib.util.find_spec(card.spec.split(":")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            parts["code"] = sha256_file(spec.origin)
    return sha256_bytes(to_json(parts).encode())


def _identity(card: DetectorCard, model: nn.Module) -> str:
    """A hash of everything the wrapped model depends on: the card, its weights and the source's file."""
    parts: dict[str, Any] = {"card": sha256_file(card.path)}
    if card.weights is not None:
        parts["weights"] = sha256_file(card.weights)
    if card.kind == "dfrobust":
        parts["checkpoint"] = sha256_file(card.checkpoint)
    code = getattr(sys.modules.get(type(model).__module__), "__file__", None) if card.kind == "python" else None
    if code and Path(code).is_file():
        parts["code"] = sha256_file(code)
    return sha256_bytes(to_json(parts).encode())


def load_card(
    path: str | Path, device: str | torch.device = "cpu", probe_size: tuple[int, int] | None = None
) -> tuple[CardDetector, dict[str, Any]]:
    """Load a detector card: build the source, load the weights, wrap, probe.

    Args:
        path: the card (``.toml``).
        device: where the model goes (the probe runs there).
        probe_size: side of the probe batch; default the card's ``input_size``, else 224 x 224.

    Returns:
        The wrapped model in eval mode and its meta: ``kind`` (``"card"``), ``name``, ``card``,
        ``source``, ``arch`` (= source), ``weights``, ``strict``, ``input_size``, ``normalization``
        (``{"kind", "mean", "std"}``), ``output``, ``fake_index``, ``num_parameters``,
        ``raw_output_shape`` (of the probe batch), ``missing_keys``/``unexpected_keys``
        (non-strict loading), ``warnings`` and ``sha256`` (identity of card + weights + code).

    >>> model, meta = load_card("detectors/xception.toml")  # doctest: +SKIP
    >>> model(torch.rand(4, 3, 64, 64)).shape               # doctest: +SKIP
    torch.Size([4, 2])
    """
    card = read_card(path)
    net = SOURCES[card.kind](card.spec, card)
    keys = load_card_weights(net, card) if card.weights is not None else {"missing": [], "unexpected": []}
    input_size = card.input_size
    if card.kind == "dfrobust" and input_size is None:
        input_size = tuple(read_sidecar(card.checkpoint)["input_size"])  # type: ignore[assignment]
    crop = None
    if card.face_crop:
        from dfrobust.models.face_crop import FaceCrop

        crop = FaceCrop((input_size or PROBE_SIZE)[0])
    model = CardDetector(net, card.output, card.fake_index, input_size, card.mean, card.std, card.name, crop)
    model = model.to(device).eval()
    size = tuple(probe_size or input_size or PROBE_SIZE)
    result = probe(model, size, device)  # type: ignore[arg-type]
    meta = {
        "kind": "card",
        "name": card.name,
        "card": str(card.path),
        "source": card.source,
        "arch": card.source,
        "weights": str(card.weights) if card.weights else None,
        "strict": card.strict,
        "input_size": list(input_size) if input_size else None,
        "normalization": {"kind": card.normalization, "mean": list(card.mean or ()), "std": list(card.std or ())},
        "output": card.output,
        "fake_index": card.fake_index,
        "face_crop": card.face_crop,
        "num_parameters": sum(p.numel() for p in net.parameters()),
        "raw_output_shape": result["raw_shape"],
        "missing_keys": keys["missing"],
        "unexpected_keys": keys["unexpected"],
        "warnings": probe_warnings(card.output, result["logits"], result["raw"]),
        "sha256": _identity(card, net),
    }
    return model, meta
