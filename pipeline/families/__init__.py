"""Model families as plugins, by name: `register(family)`, `get_family(name)`, `family_names()`.

A family (`pipeline.families.base.Family`) declares everything the generic training and
synthesis code needs: its config classes, the streams its models read, how they are built,
its objective, validation and how its output becomes speech. Every module of this package is
imported on the first lookup and registers the families it defines, so a new family is one
new module here (or a `register` call, e.g. in a test) and no edit anywhere else.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil

from pipeline.config import ConfigError
from pipeline.families.base import Family

__all__ = ["Family", "family_names", "family_of_kind", "get_family", "register", "unregister"]

_REGISTRY: dict[str, Family] = {}
_discovered = False


def register(family: Family) -> Family:
    """Add `family` under `family.name`; a second family of the same name is an error."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove family `name` (tests that register their own)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")


def family_names() -> tuple[str, ...]:
    _discover()
    return tuple(sorted(_REGISTRY))


def get_family(name: str) -> Family:
    """The family registered as `name`; ConfigError naming the closest one otherwise."""
    _discover()
    if name not in _REGISTRY:
        near = difflib.get_close_matches(str(name), list(_REGISTRY), n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"no model family {name!r}{hint}; families are {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def family_of_kind(kind: str) -> Family:
    """The one family that makes models of `kind` (a kind of its own, such as `lts`)."""
    _discover()
    makers = [f for f in _REGISTRY.values() if kind in f.kinds]
    if len(makers) != 1:
        raise ConfigError(f"kind {kind!r} is made by {len(makers)} families ({sorted(f.name for f in makers)}), not one")
    return makers[0]
