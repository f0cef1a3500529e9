"""Defenses: purifiers that map images to images before the detector, and the DIP study.

Built in: ``identity``, ``jpeg`` and ``blur`` (:mod:`.transforms`), ``dip`` (Deep Image Prior,
:mod:`.dip`). A purifier is one module: a class that subclasses :class:`Purifier` and is
decorated with :func:`register_purifier`, placed in this package (found by package discovery)
or in another package that declares it under the entry-point group ``dfrobust.purifiers``.
"""

from dfrobust.defenses.base import (
    Purifier,
    available_purifiers,
    make_purifier,
    purifier_class,
    purifier_classes,
    purifier_defaults,
    register_purifier,
)

__all__ = [
    "Purifier",
    "available_purifiers",
    "make_purifier",
    "purifier_class",
    "purifier_classes",
    "purifier_defaults",
    "register_purifier",
]
