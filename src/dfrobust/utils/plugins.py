"""Plug-in discovery: every module of a package, plus the entry points of a group."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points

log = logging.getLogger(__name__)
_DONE: set[tuple[str, str]] = set()


def discover(package: str, group: str) -> None:
    """Import every public submodule of ``package`` and load the entry points of ``group`` (once)."""
    if (package, group) in _DONE:
        return
    _DONE.add((package, group))
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plug-in must not take the tool down
            log.warning("plug-in %s (%s) failed to load: %s", ep.name, ep.value, exc)
