"""Adversarial attacks on detectors: ``make_attack(name, **params)(model, x, y) -> AttackResult``.

Built in: ``fgsm`` (:mod:`.fgsm`), ``cw`` (CW-L2, :mod:`.cw`), ``pgd`` (Linf/L2, :mod:`.pgd`).
The attack stage (:func:`dfrobust.attacks.experiment.run_attack`) and the Table II helpers
(:mod:`dfrobust.attacks.tables`) build on them.
"""

from dfrobust.attacks.base import Attack, AttackResult, available_attacks, make_attack, register_attack

__all__ = ["Attack", "AttackResult", "available_attacks", "make_attack", "register_attack"]
