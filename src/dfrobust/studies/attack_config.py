"""The settings of one attack run (:class:`AttackConfig`): the attack, its parameters, which images, batches and chains."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dfrobust.attacks import robust as platform  # --robust-to: the chains' names
from dfrobust.attacks.base import Attack, make_attack
from dfrobust.data.layouts import CLASS_CHOICES
from dfrobust.errors import DfrobustError


@dataclass
class AttackConfig:
    """Settings of one attack run (JSON-serialisable with :func:`dataclasses.asdict`).

    Attributes:
        attack: ``fgsm``, ``cw`` or ``pgd`` (see :func:`dfrobust.attacks.base.available_attacks`).
        params: the attack's parameters; missing ones take the paper's defaults, filled in on
            creation so that the stored config is complete.
        batch_size: images attacked together (one part file each, the unit of resume and sharding).
        classes: ``fake`` (the paper), ``real`` or ``both``: which test images are attacked.
        max_images: attack a seeded subset of at most this many images.
        seed: seeds the subset and any randomness of the attack.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        jpeg_quality: also evaluate after a JPEG round trip at this quality (reported beside).
        robust_to: a platform chain (:mod:`dfrobust.attacks.chain`) the attack's gradient is averaged
            over (EOT, :mod:`dfrobust.attacks.robust`); the images are also scored after it.
        heldout: a chain the attack does not see, scored too (default with ``robust_to``: ``DEFAULT_HELDOUT``).
        robust_eot: draws of the chain per gradient.
    """

    attack: str = "fgsm"
    params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    classes: str = "fake"
    max_images: int | None = None
    seed: int = 0
    device: str = "auto"
    jpeg_quality: int | None = None
    robust_to: str | None = None
    heldout: str | None = None
    robust_eot: int = 8

    def __post_init__(self) -> None:
        self.robust_to, self.heldout = platform.normalise_chains(self.robust_to, self.heldout, self.robust_eot)
        if self.classes not in CLASS_CHOICES:
            raise DfrobustError(f"--classes must be one of {sorted(CLASS_CHOICES)}, got {self.classes!r}")
        if self.batch_size < 1:
            raise DfrobustError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_images is not None and self.max_images < 1:
            raise DfrobustError(f"--max-images must be >= 1, got {self.max_images}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise DfrobustError(f"--jpeg-quality must lie in 1..100, got {self.jpeg_quality}")
        params = dict(self.params)
        attack = make_attack(self.attack, **params)
        if "seed" in attack.settings and "seed" not in params:
            params["seed"] = self.seed
            attack = make_attack(self.attack, **params)
        self.params = {k: v for k, v in attack.settings.items() if k != "attack"}

    def make(self, batch: int = 0) -> Attack:
        """The configured attack; a seeded attack gets seed ``params.seed + batch`` (independent of sharding)."""
        params = dict(self.params)
        if "seed" in params:
            params["seed"] = int(params["seed"]) + batch
        return make_attack(self.attack, **params)
