"""Adversarial attacks on detectors: ``make_attack(name, **params)(model, x, y) -> AttackResult``.

Built in: ``fgsm``, ``cw`` (CW-L2), ``pgd`` (Linf/L2), ``mifgsm`` and ``dimifgsm`` (momentum, input
diversity), ``apgd`` (Linf/L2, CE or margin loss), ``square`` (score-based). ``available_attacks()``
lists every registered one. An attack is one module: a class that subclasses :class:`Attack` and is
decorated with :func:`register_attack` (which also takes its metadata, :class:`AttackInfo`), placed
in this package (found by package discovery) or in another package that declares it under the
entry-point group ``dfrobust.attacks``. The attack stage (:func:`dfrobust.studies.attack_run.run_attack`)
and the Table II helpers (:mod:`dfrobust.studies.attack_tables`) build on them.
"""

from dfrobust.attacks.base import (
    Attack,
    AttackInfo,
    AttackResult,
    adversarial_images,
    attack_class,
    attack_classes,
    attack_defaults,
    attack_display,
    attack_info,
    available_attacks,
    make_attack,
    register_attack,
)

__all__ = [
    "Attack",
    "AttackInfo",
    "AttackResult",
    "adversarial_images",
    "attack_class",
    "attack_classes",
    "attack_defaults",
    "attack_display",
    "attack_info",
    "available_attacks",
    "make_attack",
    "register_attack",
]
