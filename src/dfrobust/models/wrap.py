"""Any classifier in dfrobust's convention: pixels ``[0, 1]`` in, 2 logits (fake = 0, real = 1) out.

One implementation behind both ways in: a detector card (:mod:`dfrobust.models.cards`, a TOML file
the commands read) and :func:`wrap_detector` (a module in hand, the Python API). Both check the same
options with the same functions (:func:`check_options`), build a :class:`CardDetector` and run the
same probe batch (:func:`probe`)::

    import torchvision
    from dfrobust import wrap_detector
    net = torchvision.models.resnet50(num_classes=1)               # one logit, sigmoid = P(fake)
    model = wrap_detector(net, output="logit", fake_index=1, input_size=224, normalization="imagenet")
    model(torch.rand(4, 3, 256, 256)).shape                         # torch.Size([4, 2]): fake, real

Resizing and normalisation live inside the wrapper, so attacks and defenses work in pixel space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dfrobust.constants import FAKE, MAX_IMAGE_SIDE, REAL
from dfrobust.errors import DfrobustError
from dfrobust.models.detectors import IMAGENET_MEAN, IMAGENET_STD

#: Output kinds a wrapped model may declare.
OUTPUTS = ("logits", "logit", "probs")
#: Probe batch side when no ``input_size`` is given.
PROBE_SIZE = (224, 224)
#: Smallest probability taken to the log (a saturated probability keeps a finite log-probability).
PROB_FLOOR = 1e-12
#: How an error names an option of a card (``{}``: the option's name); :func:`wrap_detector` names its arguments.
CARD_OPTION = "the card's `{}` key"
ARGUMENT_OPTION = "wrap_detector's `{}` argument"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class DetectorOptions:
    """Checked options of a wrapped detector (what a card's keys and :func:`wrap_detector`'s arguments resolve to)."""

    output: str
    fake_index: int | None
    real_index: int | None
    input_size: tuple[int, int] | None
    normalization: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


def parse_normalization(value: Any) -> tuple[str, tuple[float, ...] | None, tuple[float, ...] | None]:
    """``"none"``, ``"imagenet"`` or ``{mean, std}`` (one or three numbers each, std > 0) -> ``(kind, mean, std)``."""
    if value is None or value == "none":
        return "none", None, None
    if value == "imagenet":
        return "imagenet", IMAGENET_MEAN, IMAGENET_STD
    if isinstance(value, dict):
        extra = sorted(set(value) - {"mean", "std"})
        stats = [value.get("mean"), value.get("std")]
        ok = not extra and all(
            isinstance(s, (list, tuple)) and len(s) in (1, 3) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in s)
            for s in stats
        )
        if ok and all(float(v) > 0 for v in stats[1]):  # type: ignore[union-attr]
            mean, std = (tuple(float(v) for v in s) * (3 // len(s)) for s in stats)  # type: ignore[union-attr]
            return "custom", mean, std
    raise DfrobustError(f'`normalization` must be "none", "imagenet" or {{mean = [r, g, b], std = [r, g, b]}} (std > 0), got {value!r}')


def check_options(
    output: Any = "logits",
    fake_index: Any = None,
    real_index: Any = None,
    input_size: Any = None,
    normalization: Any = "none",
) -> DetectorOptions:
    """Check a wrapped detector's options; a one-line :class:`DfrobustError` names the first bad one.

    ``fake_index`` or ``real_index`` (at least one) says which output means what: for ``logits``/``probs``
    ``N x C`` the column; for ``logit`` (and one probability per image) ``fake_index = 1`` when
    ``sigmoid(z) = P(fake)``, ``real_index = 1`` when it is ``P(real)``.
    """
    if output not in OUTPUTS:
        raise DfrobustError(f"`output` must be one of {', '.join(OUTPUTS)}, got {output!r}")
    for key, value in (("fake_index", fake_index), ("real_index", real_index)):
        if value is not None and (not _is_int(value) or value < 0):
            raise DfrobustError(f"`{key}` must be a non-negative integer, got {value!r}")
    if fake_index is None and real_index is None:
        raise DfrobustError("say which output means fake: give `fake_index` (or `real_index`); dfrobust's own order is fake = 0, real = 1")
    if output == "logit":
        for key, value in (("fake_index", fake_index), ("real_index", real_index)):
            if value not in (None, 0, 1):
                raise DfrobustError(f'with output = "logit", `{key}` is 1 when sigmoid(z) = P({key[:4]}) and 0 otherwise, got {value}')
        if fake_index is not None and real_index is not None and fake_index + real_index != 1:
            raise DfrobustError(f'with output = "logit", `fake_index` {fake_index} and `real_index` {real_index} contradict each other')
    elif fake_index is not None and fake_index == real_index:
        raise DfrobustError(f"`fake_index` and `real_index` are both {fake_index}; they name two different columns")
    if input_size is not None and not (
        isinstance(input_size, (list, tuple)) and len(input_size) == 2 and all(_is_int(s) and 0 < s <= MAX_IMAGE_SIDE for s in input_size)
    ):
        raise DfrobustError(f"`input_size` must be [H, W] (two integers from 1 to {MAX_IMAGE_SIDE}), got {input_size!r}")
    kind, mean, std = parse_normalization(normalization)
    size = (input_size[0], input_size[1]) if input_size else None
    return DetectorOptions(output, fake_index, real_index, size, kind, mean, std)


def _fake_direction(fake_index: int | None, real_index: int | None) -> int:
    """For one number per image: 1 when it grows with P(fake), 0 when with P(real)."""
    return fake_index if fake_index is not None else 1 - real_index  # type: ignore[operator]


def to_two_logits(
    out: torch.Tensor, output: str, fake_index: int | None, real_index: int | None = None, option: str = CARD_OPTION
) -> torch.Tensor:
    """Turn a model's raw output into 2 logits ``N x 2`` (fake = 0, real = 1), differentiably.

    - ``logits`` ``N x C``: the fake column against the log-sum-exp of the others (for ``C = 2``
      the other column), so the softmax gives the model's own ``P(fake)``; with ``real_index``
      only, the real column against the others; with both, the two columns (the rest ignored).
    - ``logit`` ``N`` or ``N x 1``: ``[z, 0]`` when ``sigmoid(z) = P(fake)`` (``fake_index = 1``
      or ``real_index = 0``), ``[0, z]`` when it is ``P(real)``: the softmax of two logits is the
      sigmoid of their difference.
    - ``probs`` ``N x C`` (or ``N``/``N x 1`` for one sigmoid output): log-probabilities of fake and
      of real (the other columns' sum stands for the side no index names).

    ``option`` names an option in errors (``{}``: its name). Raises a one-line
    :class:`DfrobustError` when the shape does not fit ``output``.
    """
    if not isinstance(out, torch.Tensor):
        raise DfrobustError(
            f"the detector returned a {type(out).__name__}, not a tensor; make it return the output tensor "
            f"(a python: factory can wrap the model) and set {option.format('output')}"
        )
    shape = tuple(out.shape)
    single = out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)
    if output == "logit":
        if not single:
            raise DfrobustError(
                f'the detector returned shape {shape} but output = "logit" (N or N x 1); '
                f'set {option.format("output")} to "logits" or "probs" for N x C'
            )
        z = out.reshape(-1)
        zero = torch.zeros_like(z)
        pair = (z, zero) if _fake_direction(fake_index, real_index) == 1 else (zero, z)
        return torch.stack(pair, dim=1)
    if output == "probs" and single:
        direction = _fake_direction(fake_index, real_index)
        if direction not in (0, 1):
            raise DfrobustError(
                f"the detector returned one probability per image but `fake_index` is {fake_index} and `real_index` {real_index}; "
                "use fake_index 1 (P(fake)) or 0 (P(real))"
            )
        p = out.reshape(-1)
        p_fake = p if direction == 1 else 1 - p
        return torch.stack([p_fake.clamp_min(PROB_FLOOR).log(), (1 - p_fake).clamp_min(PROB_FLOOR).log()], dim=1)
    if out.ndim != 2 or out.shape[1] < 2:
        raise DfrobustError(
            f'the detector returned shape {shape} but output = "{output}" (N x C, C >= 2); '
            f'set {option.format("output")} to "logit" for one logit per image'
        )
    columns = out.shape[1]
    for key, index in (("fake_index", fake_index), ("real_index", real_index)):
        if index is not None and index >= columns:
            raise DfrobustError(f"the detector returns {columns} columns but `{key}` is {index}; use 0..{columns - 1}")

    def others(index: int) -> torch.Tensor:
        rest = torch.cat([out[:, :index], out[:, index + 1 :]], dim=1)
        if output == "probs":
            return rest.sum(dim=1).clamp_min(PROB_FLOOR).log()
        return rest[:, 0] if rest.shape[1] == 1 else rest.logsumexp(dim=1)

    def column(index: int) -> torch.Tensor:
        return out[:, index].clamp_min(PROB_FLOOR).log() if output == "probs" else out[:, index]

    fake = column(fake_index) if fake_index is not None else others(real_index)  # type: ignore[arg-type]
    real = column(real_index) if real_index is not None else others(fake_index)  # type: ignore[arg-type]
    pair = [None, None]
    pair[FAKE], pair[REAL] = fake, real
    return torch.stack(pair, dim=1)  # type: ignore[arg-type]


class CardDetector(nn.Module):
    """Any network in dfrobust's convention: resize and normalise inside, 2 logits (fake = 0, real = 1) out.

    What a detector card and :func:`wrap_detector` build.

    Args:
        model: the user's network (its own input and output conventions).
        output: ``"logits"``, ``"logit"`` or ``"probs"`` (see :func:`to_two_logits`).
        fake_index: which column (or sigmoid direction) means fake (``None`` when ``real_index`` says it).
        input_size: ``(H, W)`` images are resized to (bilinear, antialiased), or ``None``.
        mean, std: per-channel normalisation applied after resizing, or ``None``.
        name: the model's name in tables.
        crop: a module applied first (a card's face crop), or ``None``.
        real_index: which column (or sigmoid direction) means real, or ``None``.
        option: how errors name an option (:data:`CARD_OPTION` or :data:`ARGUMENT_OPTION`).
    """

    def __init__(
        self,
        model: nn.Module,
        output: str,
        fake_index: int | None,
        input_size: tuple[int, int] | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        name: str = "detector",
        crop: nn.Module | None = None,
        real_index: int | None = None,
        option: str = CARD_OPTION,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise DfrobustError(f"unknown output kind {output!r}; use one of {OUTPUTS}")
        self.model = model
        self.output = output
        self.fake_index = None if fake_index is None else int(fake_index)
        self.real_index = None if real_index is None else int(real_index)
        self.input_size = tuple(input_size) if input_size else None
        self.name = name
        self.crop = crop
        self.option = option
        self.normalized = mean is not None
        if mean is not None:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels ``[0, 1]`` at any size -> what the wrapped network expects."""
        if self.crop is not None:
            x = self.crop(x)
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        if self.normalized:
            x = (x - self.mean) / self.std
        return x

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped network's own output for pixels in ``[0, 1]``."""
        return self.model(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``N x 2`` (fake = 0, real = 1) for images ``N x 3 x H x W`` in ``[0, 1]``."""
        return to_two_logits(self.raw(x), self.output, self.fake_index, self.real_index, self.option)

    def extra_repr(self) -> str:
        real = "" if self.real_index is None else f", real_index={self.real_index}"
        return f"output={self.output!r}, fake_index={self.fake_index}{real}, input_size={self.input_size}, name={self.name!r}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def probe(model: CardDetector, size: tuple[int, int], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Run a seeded 2 x 3 x H x W batch through ``model``; one-line error when it fails or its output does not fit.

    Returns ``{"raw", "raw_shape", "logits"}`` (the wrapped network's output, its shape and the 2 logits, on the CPU).
    """
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.no_grad():
            raw = model.raw(x)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's network
        hint = "" if model.input_size else f"; set {model.option.format('input_size')} if the network needs a fixed size"
        raise DfrobustError(
            f"{model.name}: the probe forward pass on a 2x3x{size[0]}x{size[1]} batch failed: {_first_line(exc)}{hint}"
        ) from exc
    shape = list(raw.shape) if isinstance(raw, torch.Tensor) else None
    logits = to_two_logits(raw, model.output, model.fake_index, model.real_index, model.option)
    if tuple(logits.shape) != (2, 2):
        raise DfrobustError(
            f"{model.name}: the probe batch of 2 images gave output shape {shape}; set {model.option.format('output')} to match it"
        )
    return {"raw": raw.float().cpu(), "raw_shape": shape, "logits": logits.float().cpu()}


def probe_warnings(output: str, logits: torch.Tensor, raw: torch.Tensor) -> list[str]:
    """Things the probe shows that are legal but likely wrong."""
    notes = []
    if not torch.isfinite(logits).all():
        notes.append("the probe output is not finite")
    if (
        output == "logits"
        and raw.ndim == 2
        and bool(((raw >= 0) & (raw <= 1)).all())
        and torch.allclose(raw.sum(1), torch.ones(len(raw)), atol=1e-4)
    ):
        notes.append('the outputs are in [0, 1] and sum to 1: they look like probabilities; is output = "probs" meant?')
    return notes


def wrap_detector(
    model: nn.Module,
    output: str = "logits",
    fake_index: int | None = None,
    real_index: int | None = None,
    input_size: int | Sequence[int] | None = None,
    normalization: str | dict[str, Sequence[float]] = "none",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str = "detector",
    probe_size: int | Sequence[int] | None = None,
) -> CardDetector:
    """Wrap any image classifier so it maps pixels ``N x 3 x H x W`` in ``[0, 1]`` to 2 logits (fake = 0, real = 1).

    The options are a detector card's, as arguments (one implementation: :class:`CardDetector`).

    Args:
        model: the classifier (``nn.Module``), with its own input and output conventions.
        output: what it returns: ``"logits"`` (``N x C``), ``"logit"`` (``N`` or ``N x 1``) or
            ``"probs"`` (``N x C`` after softmax, or one sigmoid probability per image).
        fake_index: the column that means fake (``N x C``: the others together mean real); for
            ``"logit"``, 1 when ``sigmoid(z) = P(fake)`` and 0 when it is ``P(real)``.
        real_index: the column that means real (instead of, or with, ``fake_index``; with both
            the two columns are compared and the rest ignored); for ``"logit"``, 1 when
            ``sigmoid(z) = P(real)``. At least one of the two is required.
        input_size: ``H`` or ``(H, W)`` the model is fed: images are resized to it inside
            (bilinear, antialiased); ``None`` feeds them at their own size.
        normalization: ``"none"``, ``"imagenet"`` or ``{"mean": [r, g, b], "std": [r, g, b]}``,
            applied after resizing; or give ``mean`` and ``std`` directly.
        name: the model's name in tables.
        probe_size: side (``H`` or ``(H, W)``) of the probe batch run now; default ``input_size``,
            else 224.

    Returns:
        The wrapper (an ``nn.Module`` on the model's device, in eval mode). Any mistake the probe
        batch shows (a wrong ``output``, an index past the last column) is a one-line
        :class:`DfrobustError` now rather than inside an attack.
    """
    if not isinstance(model, nn.Module):
        raise DfrobustError(f"wrap_detector wraps a torch.nn.Module, got a {type(model).__name__}")
    if mean is not None or std is not None:
        if normalization not in ("none", None) or mean is None or std is None:
            raise DfrobustError("wrap_detector: give `mean` and `std` together, or `normalization`, not both")
        normalization = {"mean": list(mean), "std": list(std)}

    def side(value: Any) -> Any:
        return [value, value] if _is_int(value) else value

    try:
        options = check_options(output, fake_index, real_index, side(input_size), normalization)
        size = check_options(output, fake_index, real_index, side(probe_size)).input_size if probe_size is not None else None
    except DfrobustError as exc:
        raise DfrobustError(f"wrap_detector: {exc}") from None
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    wrapped = CardDetector(
        model,
        options.output,
        options.fake_index,
        options.input_size,
        options.mean,
        options.std,
        name,
        real_index=options.real_index,
        option=ARGUMENT_OPTION,
    )
    wrapped = wrapped.to(device).eval()
    probe(wrapped, size or options.input_size or PROBE_SIZE, device)
    return wrapped
