"""Plug-in discovery and registries: a plug-in is one module, found by package scan or entry point.

An attack placed in ``src/dfrobust/attacks/`` or a purifier in ``src/dfrobust/defenses/``
registers itself with a class decorator when its module is imported; :func:`discover` imports
every module of a package and every entry point of a group, so nothing else lists them.
Third-party packages add plug-ins through an entry point whose value names the module to import:

.. code-block:: toml

    [project.entry-points."dfrobust.attacks"]
    noise = "my_package.noise"

This module is a leaf (standard library and :mod:`dfrobust.errors` only), so every layer can use it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import pkgutil
import re
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from dfrobust.errors import DfrobustError
from dfrobust.utils.params import Check, check_params

log = logging.getLogger(__name__)

#: (package, group) pairs already discovered in this process.
_DISCOVERED: set[tuple[str, str]] = set()


def submodules(package: str) -> list[ModuleType]:
    """Import and return every public submodule of ``package`` (names starting with ``_`` are skipped), by name.

    A module that fails to import raises, except when a third-party package it needs is
    missing: that module is skipped with a warning (an optional extra not installed).
    """
    pkg = importlib.import_module(package)
    modules = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == package.split(".")[0]:
                raise
            log.warning("skipped plug-in module %s: it needs %s, which is not installed", name, exc.name)
    return modules


def load_entry_points(group: str) -> None:
    """Load every entry point of ``group``; a broken one is logged (naming it) and skipped."""
    import importlib.metadata  # only when plug-ins are read: it costs as much as the CLI's start-up

    for ep in importlib.metadata.entry_points(group=group):
        try:
            ep.load()
        except Exception as exc:  # a third-party plug-in must not break the tool
            log.warning("skipped plug-in %r of entry-point group %s (%s): %s: %s", ep.name, group, ep.value, type(exc).__name__, exc)


def discover(package: str, group: str) -> None:
    """Import every submodule of ``package`` and load every entry point of ``group`` (once per process).

    Importing a plug-in module runs its registration decorator; call this before reading a registry.
    """
    if (package, group) in _DISCOVERED:
        return
    _DISCOVERED.add((package, group))
    try:
        submodules(package)
        load_entry_points(group)
    except BaseException:
        _DISCOVERED.discard((package, group))  # a failed scan is retried by the next call
        raise


def forget_discovery() -> None:
    """Make the next :func:`discover` scan again (a module or entry point was added while running)."""
    _DISCOVERED.clear()


# ---------------------------------------------------------------------------------------------
# Constructor introspection: the parameters of a plug-in are its constructor's arguments.


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The named parameters of ``cls.__init__`` (no ``self``, no ``*args``/``**kwargs``), in order."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in list(params.items())[1:] if p.kind in kinds}


def json_value(value: Any) -> Any:
    """A tuple as a list (JSON has no tuples); anything else unchanged."""
    return list(value) if isinstance(value, tuple) else value


def constructor_defaults(cls: type) -> dict[str, Any]:
    """``{parameter: default}`` of ``cls``'s constructor (tuples as lists; a required parameter is absent)."""
    return {k: json_value(p.default) for k, p in constructor_parameters(cls).items() if p.default is not p.empty}


def constructor_settings(obj: Any, kind: str) -> dict[str, Any]:
    """``{kind: obj.name, <parameter>: value, ...}``: each parameter read from the attribute of the same name."""
    params = {k: json_value(getattr(obj, k)) for k in constructor_parameters(type(obj))}
    return {kind: obj.name, **params}


class Plugin:
    """Base of plug-ins whose constructor arguments are their parameters, each checked against its declared constraint.

    A subclass declares ``params = {"steps": Interval(1, integer=True), ...}`` (see :mod:`dfrobust.utils.params`)
    and its constructor no longer checks them: every ``__init__`` a subclass defines is wrapped so that
    the arguments (defaults filled in) are checked first, with a one-line :class:`DfrobustError` naming
    the parameter. The same constraints check ``--set`` and the study config (:func:`declared_params`).
    """

    name: str = "plugin"
    #: parameter -> constraint (a subclass's own table; it inherits its parent's unless it sets one).
    params: ClassVar[dict[str, Check]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "__checks_params__", False):
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def checked(self: Any, *args: Any, **kw: Any) -> None:
            try:
                bound = signature.bind(self, *args, **kw)
            except TypeError:
                return init(self, *args, **kw)  # Python's own message for a wrong call
            bound.apply_defaults()
            values = {k: v for k, v in list(bound.arguments.items())[1:]}
            check_params(type(self).name, type(self).params, values)
            init(self, *args, **kw)

        checked.__checks_params__ = True  # type: ignore[attr-defined]
        cls.__init__ = checked  # type: ignore[method-assign]


def declared_params(cls: type) -> dict[str, Check]:
    """The constraints ``cls`` declares for its constructor's parameters (those it names and takes)."""
    names = constructor_parameters(cls)
    return {k: c for k, c in getattr(cls, "params", {}).items() if k in names}


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns?|Yields?|Raises|Attributes|Examples?|Notes?|See Also|Extras?)\s*:", re.M)


def docstring_args(cls: type) -> dict[str, str]:
    """Descriptions of the constructor's parameters from the class docstring's Google-style ``Args:`` section.

    Entries are found by the parameter names (``name: text`` at the start of a line, or inline
    in a one-line docstring: ``Args: eps: radius. seed: seed.``). Whitespace is folded.

    >>> class A:
    ...     '''Doc.
    ...
    ...     Args:
    ...         eps: the radius,
    ...             in pixels.
    ...     '''
    ...     def __init__(self, eps: float = 1.0) -> None: ...
    >>> docstring_args(A)
    {'eps': 'the radius, in pixels.'}
    """
    doc = inspect.getdoc(cls) or ""
    start = re.search(r"(?:^|\s)(?:Args|Arguments|Parameters)\s*:", doc)
    if start is None:
        return {}
    body = doc[start.end() :]
    end = [m.start() for m in (re.search(r"\n\s*\n", body), _SECTION.search(body)) if m]
    body = body[: min(end)] if end else body
    names = list(constructor_parameters(cls))
    if not names:
        return {}
    entry = "(" + "|".join(map(re.escape, names)) + r")(?:\s*\([^)]*\))?\s*:\s"
    # entries start lines (Google style); a one-line docstring lists them inline
    hits = list(re.finditer(r"\n[ \t]*" + entry, body)) or list(re.finditer(r"(?:^|\s)" + entry, body))
    out = {}
    for hit, nxt in zip(hits, [*hits[1:], None]):
        text = body[hit.end() : nxt.start() if nxt else len(body)]
        out.setdefault(hit.group(1), " ".join(text.split()))
    return out


def summary_line(cls: type) -> str:
    """The first line of ``cls``'s docstring (up to an inline ``Args:``)."""
    doc = (inspect.getdoc(cls) or "").strip()
    first = doc.splitlines()[0] if doc else ""
    return re.split(r"\s(?:Args|Arguments|Parameters)\s*:", first)[0].strip()


# ---------------------------------------------------------------------------------------------
# A registry of plug-in classes by name.

T = TypeVar("T")


def _aliases(cls: type) -> tuple[str, ...]:
    # the class's own ``aliases``: a subclass answers to its own name, not to its parent's aliases
    return tuple(vars(cls).get("aliases", ()))


def _same_class(a: type, b: type) -> bool:
    # a reloaded module re-creates its classes: the same definition is not a duplicate
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


class Registry(Generic[T]):
    """Plug-in classes of one kind by name, filled by :meth:`register` and by discovery on first read.

    Args:
        kind: what the plug-ins are, for messages (``attack``).
        package: the package whose modules are plug-ins (``dfrobust.attacks``).
        group: the entry-point group of third-party plug-ins (``dfrobust.attacks``).
    """

    def __init__(self, kind: str, package: str, group: str) -> None:
        self.kind = kind
        self.package = package
        self.group = group
        #: name -> class; read it through :meth:`classes`, which discovers first.
        self.entries: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add ``cls`` under ``cls.name`` (another class under a taken name is an error).

        A class may also list other names it answers to in its own ``aliases`` (a tuple of strings): configs
        written with an alias get the class, and :meth:`canonical` turns the alias into ``cls.name``.
        """
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise DfrobustError(f"{cls.__qualname__} needs a class attribute `name` to be registered as a {self.kind}")
        for taken in (name, *_aliases(cls)):
            old = self.entries.get(taken) or next((c for c in self.entries.values() if taken in _aliases(c)), None)
            if old is not None and not _same_class(old, cls):
                raise DfrobustError(
                    f"{self.kind} name {taken!r} is taken by {old.__module__}.{old.__qualname__}; "
                    f"give {cls.__module__}.{cls.__qualname__} another name"
                )
        self.entries[name] = cls
        return cls

    def canonical(self, name: str) -> str:
        """The registered name for ``name``: itself, or the name of the class that lists it in ``aliases``
        (a name nobody registered is returned as it is, for :meth:`get` to refuse)."""
        classes = self.classes()
        if name in classes:
            return name
        return next((n for n, c in classes.items() if name in _aliases(c)), name)

    def classes(self) -> dict[str, type[T]]:
        """Every registered class by name, sorted by name (discovers the plug-ins first)."""
        discover(self.package, self.group)
        return dict(sorted(self.entries.items()))

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return list(self.classes())

    def get(self, name: str) -> type[T]:
        """The class registered as ``name`` (one-line error naming the choices otherwise)."""
        classes = self.classes()
        name = self.canonical(name)
        if name not in classes:
            raise DfrobustError(f"unknown {self.kind} {name!r}; use one of {sorted(classes)}")
        return classes[name]

    def defaults(self, name: str) -> dict[str, Any]:
        """The default parameters of ``name`` (its constructor's defaults)."""
        return constructor_defaults(self.get(name))

    def create(self, name: str, **params: Any) -> T:
        """Build ``name`` with ``params`` (an unknown parameter is a one-line error)."""
        cls = self.get(name)
        allowed = set(constructor_parameters(cls))
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise DfrobustError(f"{self.kind} {name} has no parameter(s) {unknown}; its parameters are {sorted(allowed)}")
        return cls(**params)
