"""Platform transformation chains: what an image goes through between the attacker and the detector.

A chain is written once, as ``--robust-to`` takes it: comma-separated steps ``NAME:LO-HI`` (a
range drawn uniformly per image and draw) or ``NAME:V`` (fixed), applied left to right:

==========  ==========================================  =================  ===================
step        what it does                                range              backward (BPDA)
==========  ==========================================  =================  ===================
``jpeg``    JPEG encode + decode at a quality (Pillow)  1..100, integer    differentiable JPEG
``h264``    H.264 intra encode + decode at a CRF        0..51, integer     identity
``resize``  down-scale by a factor and back (bilinear)  0.1..1             itself
``blur``    Gaussian blur, sigma in pixels              0..10              itself
``shift``   translate by up to S pixels each way        0..64, integer     itself
``crop``    keep a fraction of each side, scale back    0.5..1             itself
==========  ==========================================  =================  ===================

>>> chain = parse_chain("jpeg:50-95,resize:0.5-1.0,blur:0-1")
>>> format_chain(chain)
'jpeg:50-95,resize:0.5-1,blur:0-1'
>>> apply_chain(torch.rand(2, 3, 16, 16), chain, seeds=[0, 1]).shape
torch.Size([2, 3, 16, 16])

The real transform always gives the forward value; the codecs have no gradient, so their
backward pass is a stand-in (BPDA, Athalye et al. 2018): JPEG's is a differentiable JPEG of the
same quality (:mod:`dfrobust.attacks.diffjpeg`, which knows which frequencies survive), H.264's
the identity (straight-through); the other steps are differentiable and give their own. :mod:`dfrobust.attacks.robust` averages an attack's gradient
over draws of a chain (EOT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from dfrobust.attacks.diffjpeg import diff_jpeg
from dfrobust.constants import HELDOUT_CHAIN
from dfrobust.errors import DfrobustError
from dfrobust.utils.imageops import gaussian_blur, jpeg_round_trip

#: Step name -> (lowest, highest allowed value, integer-valued, what the value is).
STEPS: dict[str, tuple[float, float, bool, str]] = {
    "jpeg": (1, 100, True, "JPEG quality"),
    "h264": (0, 51, True, "H.264 CRF"),
    "resize": (0.1, 1.0, False, "scale factor"),
    "blur": (0.0, 10.0, False, "blur sigma in pixels"),
    "shift": (0, 64, True, "shift in pixels"),
    "crop": (0.5, 1.0, False, "kept fraction of each side"),
}
#: Steps whose real transform has no gradient: the backward pass is a stand-in.
CODECS = ("jpeg", "h264")
#: The held-out chain used when none is given: qualities and scales outside a typical --robust-to range.
DEFAULT_HELDOUT = HELDOUT_CHAIN


@dataclass(frozen=True)
class Step:
    """One step of a chain: ``name`` and the range ``[lo, hi]`` its value is drawn from."""

    name: str
    lo: float
    hi: float

    def text(self) -> str:
        """The step as ``--robust-to`` writes it."""
        lo, hi = (f"{v:g}" for v in (self.lo, self.hi))
        return f"{self.name}:{lo}" if self.lo == self.hi else f"{self.name}:{lo}-{hi}"


Chain = tuple[Step, ...]


def _number(text: str, step: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DfrobustError(f"--robust-to {spec!r}: {step} wants a number or LO-HI range, got {text!r}") from None
    if not math.isfinite(value):
        raise DfrobustError(f"--robust-to {spec!r}: {step} value {text!r} is not finite")
    return value


def parse_chain(spec: str, flag: str = "--robust-to") -> Chain:
    """Parse ``"jpeg:50-95,resize:0.5-1.0"`` into steps; any mistake is a one-line :class:`DfrobustError`.

    The error names the flag, the step and what is allowed (names, ranges, integer values).
    """
    text = spec.strip()
    if not text:
        raise DfrobustError(f"{flag} is empty; give steps like jpeg:50-95,resize:0.5-1.0 ({', '.join(STEPS)})")
    steps = []
    for part in text.split(","):
        part = part.strip()
        name, colon, value = part.partition(":")
        name = name.strip().lower()
        if name not in STEPS:
            raise DfrobustError(f"{flag} {spec!r}: unknown step {name!r}; steps are {', '.join(STEPS)} (NAME:LO-HI or NAME:V)")
        if not colon or not value.strip():
            raise DfrobustError(f"{flag} {spec!r}: step {name} needs a value, e.g. {name}:{_example(name)}")
        lo_text, dash, hi_text = value.strip().partition("-")
        lo = _number(lo_text, name, spec)
        hi = _number(hi_text, name, spec) if dash else lo
        low, high, integer, what = STEPS[name]
        if lo > hi:
            raise DfrobustError(f"{flag} {spec!r}: {name} range {value} runs backwards (LO-HI with LO <= HI)")
        if lo < low or hi > high:
            raise DfrobustError(f"{flag} {spec!r}: {name} ({what}) must lie in {low:g}..{high:g}, got {value}")
        if integer and (lo != int(lo) or hi != int(hi)):
            raise DfrobustError(f"{flag} {spec!r}: {name} ({what}) takes whole numbers, got {value}")
        steps.append(Step(name, lo, hi))
    if any(s.name == "h264" for s in steps):
        from dfrobust.data.video import require_av

        require_av(f"{flag} h264")
    return tuple(steps)


def _example(name: str) -> str:
    low, high, integer, _ = STEPS[name]
    return f"{int(low)}-{int(high)}" if integer else f"{low:g}-{high:g}"


def format_chain(chain: Chain) -> str:
    """The chain as ``--robust-to`` writes it (normalised numbers), as recorded in results."""
    return ",".join(s.text() for s in chain)


def draw_params(chain: Chain, n: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One value per image for every step: uniform on ``[lo, hi]`` (integers inclusive), CPU tensors."""
    params = []
    for step in chain:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        if STEPS[step.name][2]:
            params.append((step.lo + torch.floor(u * (step.hi - step.lo + 1))).clamp(max=step.hi))
        else:
            params.append(step.lo + u * (step.hi - step.lo))
    return params


def apply_step(x: torch.Tensor, step: Step, value: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Step ``step`` on images ``x`` with one value per image; the codecs pass gradients straight through."""
    if step.name in CODECS:
        if step.name == "jpeg":
            real = jpeg_round_trip(x.detach().clamp(0, 1), value.long().tolist())
            # the forward value is the codec's output; the gradient is the differentiable JPEG's (BPDA)
            stand_in = diff_jpeg(x, value) if x.requires_grad else x
        else:
            from dfrobust.data.video import h264_round_trip

            real = h264_round_trip(x.detach().clamp(0, 1), value.long().tolist())
            stand_in = x  # straight-through
        return real.to(x.dtype) + (stand_in - stand_in.detach())
    if step.name == "blur":
        return gaussian_blur(x, value.to(x.device)) if bool((value > 0).any()) else x
    if step.name == "resize":
        return _resize_back(x, value)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    n = len(x)
    if step.name == "shift":
        # a whole-pixel shift each way, drawn within +-value
        u = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1
        offsets = torch.round(u * value[:, None])
        return _affine(x, torch.ones(n, dtype=torch.float64), offsets, mode="nearest")  # whole pixels move, none blend
    # crop: keep `value` of each side at a random place, scaled back to the full size
    room = (1 - value)[:, None] * torch.tensor([x.shape[3], x.shape[2]], dtype=torch.float64)
    offsets = (torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * room
    return _affine(x, value, offsets)


def _affine(x: torch.Tensor, scale: torch.Tensor, offsets: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``x`` at ``scale * p + offset`` (pixels, per image), border pixels repeated; differentiable."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = scale.to(x.dtype)
    theta[:, 1, 1] = scale.to(x.dtype)
    theta[:, 0, 2] = (2 * offsets[:, 0] / w).to(x.dtype)  # normalised coordinates span 2 over the width
    theta[:, 1, 2] = (2 * offsets[:, 1] / h).to(x.dtype)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)


def _resize_back(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Down-scale each image by its factor (antialiased bilinear) and back to its size; one pass per distinct size."""
    _, _, h, w = x.shape
    sizes = [(max(1, round(h * float(f))), max(1, round(w * float(f)))) for f in factor]
    out = torch.zeros_like(x)
    for size in sorted(set(sizes)):
        idx = torch.tensor([i for i, s in enumerate(sizes) if s == size], device=x.device)
        part = x[idx]
        if size != (h, w):
            small = F.interpolate(part, size=size, mode="bilinear", antialias=True, align_corners=False)
            part = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        out = out.index_add(0, idx, part)  # out of place, so the gradient flows to every image
    return out


def apply_drawn(x: torch.Tensor, chain: Chain, params: Sequence[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """The chain on ``x`` with drawn ``params`` (from :func:`draw_params`), in [0, 1]."""
    for step, value in zip(chain, params):
        x = apply_step(x, step, value, generator)
    # the steps stay in [0, 1] up to rounding; a plain clamp would also zero the gradient of saturated pixels
    return x + (x.clamp(0, 1) - x).detach()


def apply_chain(x: torch.Tensor, chain: Chain, seeds: Sequence[int]) -> torch.Tensor:
    """The real chain on each image with its own seed (``seeds[i]``): the platform an image passes through.

    An image's draw depends only on its seed, so it does not change with the batching; no gradient.
    """
    if len(seeds) != len(x):
        raise ValueError(f"{len(x)} images but {len(seeds)} seeds")
    out = []
    with torch.no_grad():
        for i, seed in enumerate(seeds):  # one draw per image from its own seed; the steps themselves are batched
            gen = torch.Generator().manual_seed(int(seed))
            out.append(apply_drawn(x[i : i + 1], chain, draw_params(chain, 1, gen), gen))
    return torch.cat(out) if out else x
