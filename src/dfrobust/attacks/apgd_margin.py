"""APGD with the margin loss as an attack of its own, so that a study can run it beside APGD-CE.

AutoAttack's second attack is APGD on the targeted DLR loss, which needs 3 or more classes; for a
2-class detector the margin (CW) loss ``max_{i != y} z_i - z_y`` is the two-class-safe stand-in. A
study names attacks by their registered names, one section each (``[attack.apgd]``), so APGD-CE and
APGD-margin need two names: this one (``[attack.apgd-margin]``; its results' label is
``apgd-margin-linf``). In the presets' chain it attacks APGD-CE's survivors and Square attacks its
survivors (``survivors_of``, :mod:`dfrobust.studies.attack_survivors`).
"""

from __future__ import annotations

from typing import Literal

from dfrobust.attacks.apgd import APGD
from dfrobust.attacks.base import register_attack


@register_attack
class APGDMargin(APGD):
    """APGD on the margin loss (``max_{i != y} z_i - z_y``): AutoAttack's second attack for a 2-class detector.

    Args:
        eps: radius of the ball (default 0.02 for ``linf``, the paper's FGSM budget; 0.5 for ``l2``).
        norm: ``linf`` or ``l2``.
        steps: iterations per restart (Croce & Hein: 100).
        restarts: random restarts; each later one attacks only the images not yet fooled (1).
        loss: ``margin`` (this attack's reason to exist), or ``ce`` / ``dlr`` as for ``apgd``.
        rho: step-size halving threshold (0.75).
        alpha: momentum weight (0.75).
        seed: seed of the random starts.
        stop_margin: stop iterating on an image once fooled by this margin (not given: every image runs every step).
    """

    name = "apgd-margin"

    def __init__(
        self,
        eps: float | None = None,
        norm: Literal["linf", "l2"] = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: Literal["ce", "margin", "dlr"] = "margin",
        rho: float = 0.75,
        alpha: float = 0.75,
        seed: int = 0,
        stop_margin: float | None = None,
    ) -> None:
        super().__init__(eps, norm, steps, restarts, loss, rho, alpha, seed, stop_margin)
