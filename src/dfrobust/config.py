"""Study configuration: presets shipped as TOML files, plus ``--set key=value`` overrides.

A study config is a nested dict with the sections ``run``, ``data``, ``train``, ``attack``,
``dip`` (see ``presets/paper.toml`` for every key and the paper's values). Presets may
``extends = "other"`` to start from another preset. Overrides use dotted keys and TOML values:
``--set attack.cw.max_steps=200 --set train.epochs=3 --set data.size=48``.
"""

from __future__ import annotations

from collections.abc import Callable

import copy
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from dfrobust.errors import DfrobustError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a declared dependency there)
    import tomli as tomllib

SECTIONS = ("run", "data", "train", "attack", "dip")


def available_presets() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.name.removesuffix(".toml") for p in resources.files("dfrobust.presets").iterdir() if p.name.endswith(".toml"))


def _read_preset_file(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        res = resources.files("dfrobust.presets") / f"{name_or_path}.toml"
        if not res.is_file():
            raise DfrobustError(f"unknown preset {name_or_path!r}; use one of {available_presets()} or a path to a .toml file")
        text = res.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DfrobustError(f"preset {name_or_path} is not valid TOML: {exc}") from exc


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in, recursively for nested dicts."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_preset(name_or_path: str) -> dict[str, Any]:
    """Load a preset by name (``quick``, ``cpu``, ``paper``, ``tiny``) or path, resolving ``extends``."""
    raw = _read_preset_file(name_or_path)
    parent = raw.pop("extends", None)
    cfg = deep_merge(load_preset(parent), raw) if parent else raw
    cfg.setdefault("run", {})["preset"] = Path(name_or_path).stem
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` into (``["a", "b", "c"]``, value) with the value read as TOML.

    Bare words that are not valid TOML are taken as strings (``--set data.source=synth``).
    """
    if "=" not in text:
        raise DfrobustError(f"--set wants KEY=VALUE (e.g. attack.cw.max_steps=200), got {text!r}")
    key, _, value = text.partition("=")
    keys = [k.strip() for k in key.strip().split(".") if k.strip()]
    if not keys:
        raise DfrobustError(f"--set {text!r} has an empty key")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return keys, parsed


#: ``defaults_of(section_path)``: the parameters (with defaults) of a plug-in's section such as
#: ``["attack", "square"]``, or ``None`` when the path is no plug-in's; supplied by a higher layer.
SectionDefaults = Callable[[list[str]], "dict[str, Any] | None"]


#: ``canonical(name)``: the registered name of the attack called ``name`` (an alias resolved, any
#: other name unchanged); supplied by a higher layer (the attack registry).
Canonical = Callable[[str], str]

#: The keys whose values name attacks: lists of names, or one name (``adaptive.attack``).
ATTACK_NAME_KEYS = ("attack.attacks", "attack.transfer_only", "attack.ensemble", "dip.attacks", "platform.attacks", "adaptive.attack")


def canonical_attack_names(cfg: dict[str, Any], canonical: Canonical) -> dict[str, Any]:
    """A copy of ``cfg`` that names every attack by its registered name: the values of
    :data:`ATTACK_NAME_KEYS` and the ``[attack.NAME]`` sections (an alias's section is merged into
    the registered name's, its own keys winning)."""
    out = copy.deepcopy(cfg)
    for dotted in ATTACK_NAME_KEYS:
        section, key = dotted.split(".")
        node = out.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str):
            node[key] = canonical(value)
        elif isinstance(value, list):
            node[key] = [canonical(v) if isinstance(v, str) else v for v in value]
    if isinstance(out.get("attack"), dict):
        attack: dict[str, Any] = {}
        for key, value in out["attack"].items():
            name = canonical(key) if isinstance(value, dict) else key
            attack[name] = deep_merge(attack[name], value) if isinstance(attack.get(name), dict) else value
        out["attack"] = attack
    return out


def apply_overrides(
    cfg: dict[str, Any], overrides: list[str], defaults_of: SectionDefaults | None = None, canonical: Canonical | None = None
) -> dict[str, Any]:
    """Apply ``--set`` overrides; a key that the preset does not have is an error (catches typos).

    With ``defaults_of``, a plug-in's section (``attack.X`` for any registered attack) accepts
    every parameter of the plug-in, typed by its default, even when the preset has no such section.
    With ``canonical``, attacks may be named by an alias (``--set attack.ALIAS.eps=0.03``, or in a
    list of attacks): the result names them by their registered names.
    """
    out = copy.deepcopy(cfg)
    for text in overrides:
        keys, value = parse_override(text)
        if canonical is not None and len(keys) > 2 and keys[0] == "attack":
            keys[1] = canonical(keys[1])
        node = out
        declared: dict[str, Any] = {}
        for i, k in enumerate(keys[:-1]):
            if not isinstance(node.get(k), dict):
                plugin = defaults_of(keys[: i + 1]) if defaults_of is not None and k not in node else None
                if plugin is None:
                    raise DfrobustError(f"--set {text}: no section {'.'.join(keys[: i + 1])!r} in the preset")
                node[k] = {}
            node = node[k]
        if defaults_of is not None and len(keys) > 1:
            declared = defaults_of(keys[:-1]) or {}
        # per-role training settings and the synthetic data's swap knobs are open sections
        free = keys[:-1] in (["train", "vgg16"], ["train", "resnet18"], ["train", "efficientnet-lite0"], ["data", "swap"])
        if keys[-1] not in node and keys[-1] in declared and declared[keys[-1]] is not None:
            node_default = declared[keys[-1]]
            if isinstance(node_default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, type(node_default)):
                raise DfrobustError(f"--set {text}: {'.'.join(keys)} expects {type(node_default).__name__}, got {type(value).__name__}")
        if keys[-1] not in node and not free and keys[-1] not in declared:
            known = ", ".join(sorted({*node, *declared})) or "none"
            raise DfrobustError(f"--set {text}: unknown key {'.'.join(keys)!r} (known here: {known})")
        old = node.get(keys[-1])
        if isinstance(old, dict):
            raise DfrobustError(f"--set {text}: {'.'.join(keys)!r} is a section; set one of its keys")
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if old is not None and not isinstance(value, type(old)) and not (isinstance(old, float) and isinstance(value, float)):
            raise DfrobustError(f"--set {text}: {'.'.join(keys)} expects {type(old).__name__}, got {type(value).__name__}")
        node[keys[-1]] = value
    return canonical_attack_names(out, canonical) if canonical is not None else out


def study_config(
    preset: str, overrides: list[str] | None = None, defaults_of: SectionDefaults | None = None, canonical: Canonical | None = None
) -> dict[str, Any]:
    """The full config of a study: the preset with overrides applied and checked (see :func:`apply_overrides`).

    With ``canonical``, the preset and the overrides may name an attack by an alias (see
    :func:`canonical_attack_names`); the config names it by its registered name.
    """
    cfg = load_preset(preset)
    if canonical is not None:
        cfg = canonical_attack_names(cfg, canonical)
    cfg = apply_overrides(cfg, overrides or [], defaults_of, canonical)
    missing = [s for s in SECTIONS if s not in cfg]
    if missing:
        raise DfrobustError(f"preset {preset} lacks section(s) {missing}")
    cfg["run"]["overrides"] = list(overrides or [])
    return cfg
