"""Adversarial attacks on detectors: ``make_attack(name, **params)(model, x, y) -> AttackResult``.

Built in: ``fgsm`` (:mod:`.fgsm`), ``cw`` (CW-L2, :mod:`.cw`), ``pgd`` (Linf/L2, :mod:`.pgd`).
An attack is one module: a class that subclasses :class:`Attack` and is decorated with
:func:`register_attack`, placed in this package (found by package discovery) or in another
package that declares it under the entry-point group ``dfrobust.attacks``. The attack stage
(:func:`dfrobust.studies.attack_run.run_attack`) and the Table II helpers
(:mod:`dfrobust.studies.attack_tables`) build on them.
"""

from dfrobust.attacks.base import (
    Attack,
    AttackResult,
    attack_class,
    attack_classes,
    attack_defaults,
    available_attacks,
    make_attack,
    register_attack,
)

__all__ = [
    "Attack",
    "AttackResult",
    "attack_class",
    "attack_classes",
    "attack_defaults",
    "available_attacks",
    "make_attack",
    "register_attack",
]
