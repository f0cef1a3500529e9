"""The purifier API: ``make_purifier(name, **params)(x, seed) -> x'``, and a registry of purifiers.

A purifier maps images to images (``N x 3 x H x W`` in ``[0, 1]``, batched) before the
detector sees them. It says whether it is random (:attr:`Purifier.random`: DIP draws a
network and input noise), and its ``seed`` argument picks the draw, so an evaluation can take
one draw or the worst of several, and an adaptive attack can average over draws (EOT).
:meth:`Purifier.surrogate` is the differentiable stand-in that BPDA uses on the backward pass.

>>> purifier = make_purifier("jpeg", quality=75)  # doctest: +SKIP
>>> x_pure = purifier(x)                          # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from dfrobust.utils.plugins import Plugin, Registry, constructor_settings


class Purifier(Plugin, ABC):
    """Maps images to images: N x 3 x H x W in [0,1] -> same shape, batched. Constructor args are its parameters.

    Subclasses set ``name`` (and ``random`` when the output depends on a random draw),
    implement :meth:`purify`, store each constructor parameter under an attribute of the same
    name and register with :func:`register_purifier`. Calling a purifier runs :meth:`purify`
    without autograd; a purifier that optimises (DIP) enables gradients for its own work.
    """

    name: str = "purifier"
    #: True when the output depends on a random draw (DIP: network init + input noise).
    random: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        """``{"purifier": name, <parameter>: value, ...}`` (JSON-serialisable)."""
        return constructor_settings(self, "purifier")

    @abstractmethod
    def purify(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Purified images (same shape); ``seed`` picks the draw of a random purifier, a deterministic one ignores it."""

    def __call__(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Purify ``x`` (``N x 3 x H x W`` in ``[0, 1]``): detached, clamped to ``[0, 1]``, on ``x``'s device and dtype."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be N x 3 x H x W, got shape {tuple(x.shape)}")
        with torch.no_grad():
            out = self.purify(x.detach(), seed)
        if out.shape != x.shape:
            raise ValueError(f"purifier {self.name} returned shape {tuple(out.shape)} for images {tuple(x.shape)}")
        return out.detach().clamp(0, 1).to(x.device, x.dtype)

    def purify_seeded(self, x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Purify row ``i`` of ``x`` with draw ``seeds[i]`` (as ``self(x[i:i+1], seeds[i])``), detached and clamped.

        Many draws of many images in one call: a purifier that fits each image on its own (DIP)
        overrides this to run them all as one batch; the default purifies row by row, or all at
        once for a deterministic purifier.
        """
        if len(seeds) != len(x):
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {len(x)} images")
        if not self.random:
            return self(x)
        return torch.cat([self(x[i : i + 1], int(s)) for i, s in enumerate(seeds)]) if len(x) else x.detach().clone()

    def surrogate(self, x: torch.Tensor) -> torch.Tensor | None:
        """A differentiable stand-in for BPDA's backward pass; ``None`` means the identity."""
        return None


#: Purifier name -> class: the purifier modules of this package and the ``dfrobust.purifiers`` entry points.
PURIFIERS: Registry[Purifier] = Registry("purifier", "dfrobust.defenses", "dfrobust.purifiers")


def register_purifier(cls: type[Purifier]) -> type[Purifier]:
    """Class decorator: make a purifier available to :func:`make_purifier` under ``cls.name``.

    Another class under a name already taken is a :class:`~dfrobust.errors.DfrobustError`.
    """
    return PURIFIERS.register(cls)


def available_purifiers() -> list[str]:
    """Names accepted by :func:`make_purifier` (built-in, user modules in this package, entry points)."""
    return PURIFIERS.names()


def purifier_classes() -> dict[str, type[Purifier]]:
    """Every purifier class by name."""
    return PURIFIERS.classes()


def purifier_class(name: str) -> type[Purifier]:
    """The class registered as ``name`` (one-line error naming the choices otherwise)."""
    return PURIFIERS.get(name)


def purifier_defaults(name: str) -> dict[str, Any]:
    """The default parameters of purifier ``name`` (its constructor's defaults)."""
    return PURIFIERS.defaults(name)


def make_purifier(name: str, **params: Any) -> Purifier:
    """Build purifier ``name`` with ``params`` (unknown parameters are a one-line error).

    >>> make_purifier("jpeg", quality=50).settings  # doctest: +SKIP
    {'purifier': 'jpeg', 'quality': 50}
    """
    return PURIFIERS.create(name, **params)
