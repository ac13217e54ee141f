"""Reading `params.yaml`: parsed once, at the stage entry, into frozen typed config objects.

`load_params` returns the raw tree; a stage entry wraps it in `Params` and parses each section
it declares in `dvc.yaml` with `Params.parse(dotted, ConfigClass)`. Below the stage entry no
function sees the tree. Parsing is strict: an unknown key is an error naming the key and the
closest valid one, a value of the wrong type is an error naming the key and the type. Every
default lives in `params.yaml`: config dataclasses that mirror a section give their fields no
defaults, so code and file can never disagree about a value.

`Params(tree, declared=...)` also refuses to read a key outside `declared` (the stage's `params:`
list in dvc.yaml), which is how the tests prove a stage reads only what DVC tracks for it.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import fnmatch
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

PARAMS_FILE = Path(os.environ.get("V2S_PARAMS", "params.yaml"))

T = TypeVar("T")


class ConfigError(ValueError):
    """A params section that does not fit its config class: unknown key, wrong type, missing key."""


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the whole parameter tree of `params.yaml` (or `path`)."""
    path = Path(path or PARAMS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:  # one line, where the mistake is: not a parser traceback
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None


RECIPE, RECIPES = "recipe", "recipes"
# Mappings whose keys the reading stage checks (a model family's fields over its preset, a stage's
# overrides of `train:`): a recipe may add keys to them even where the file already sets some.
OVERRIDE_MAPPINGS = ("model.overrides.*", "v2a.train", "av2a.train", "lts.train", "vocoder.train")


def is_open_mapping(path: str, node: Any) -> bool:
    """Whether a recipe may add keys to the file's mapping `node` at dotted `path`: an empty one,
    such as `recipes.demo: {}`, or one of OVERRIDE_MAPPINGS."""
    return isinstance(node, Mapping) and (not node or any(fnmatch.fnmatchcase(path, p) for p in OVERRIDE_MAPPINGS))


def apply_recipe(tree: Mapping[str, Any]) -> dict[str, Any]:
    """`tree` with `recipes.<recipe>` laid over it: a recipe rewrites values of keys the file has
    (or adds keys to an open mapping, such as `model.overrides.melspec`: `is_open_mapping`)."""
    name = tree.get(RECIPE)
    recipes = tree.get(RECIPES) or {}
    if name is not None and name not in recipes:
        raise ConfigError(f"recipe {name!r} is not a key of recipes{_closest(str(name), list(recipes))}")
    # every recipe is checked, the inactive ones too: a typo shows before the recipe is first used
    applied = {n: _overlay(tree, over or {}, f"{RECIPES}.{n}", "") for n, over in recipes.items()}
    return applied[name] if name is not None else dict(tree)


def _overlay(base: Mapping[str, Any], over: Any, where: str, path: str) -> dict[str, Any]:
    if not isinstance(over, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {over!r}")
    out = dict(base)
    open_ = is_open_mapping(path[:-1], base)
    for key, value in over.items():
        at = f"{path}{key}"
        if at in (RECIPE, RECIPES) or (not open_ and key not in base):
            raise ConfigError(f"unknown key {where}.{key}: params.yaml has no key {at}{_closest(str(key), list(base))}")
        inner = base.get(key)
        out[key] = (_overlay(inner, value, f"{where}.{key}", f"{at}.")
                    if isinstance(value, Mapping) and isinstance(inner, Mapping) else value)
    return out


def recipe_keys(tree: Mapping[str, Any]) -> list[str]:
    """The dotted keys the active recipe sets (its leaves)."""

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, Mapping) and node:
            return [k for key, v in node.items() for k in leaves(v, f"{prefix}{key}.")]
        return [prefix[:-1]]

    over = (tree.get(RECIPES) or {}).get(tree.get(RECIPE)) or {}
    return leaves(over, "") if over else []


class FrozenMap(dict):  # type: ignore[type-arg]
    """A read-only dict: what mappings inside frozen configs become (hashable, picklable, JSON-ready)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("config mappings are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(to_plain(self), sort_keys=True, default=str))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (dict(self),))


def _closest(key: str, valid: Iterable[str]) -> str:
    valid = sorted(map(str, valid))
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if match:
        return f" (did you mean {match[0]!r}?)"
    return f" (valid: {', '.join(valid)})" if valid else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` as type `tp`, or a ConfigError naming `where`."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            match = difflib.get_close_matches(str(value), list(map(str, args)), n=1, cutoff=0.6)
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}" + (f" (did you mean {match[0]!r}?)" if match else ""))
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return parse(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item = args[0] if args else Any
            items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items)  # frozen configs hold tuples, so they hash and compare
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return FrozenMap({_coerce(k, kt, f"{where}.{k}"): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()})
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def parse(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """A `cls` (a dataclass) from `data`, strictly: unknown keys, wrong types and missing keys are errors."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            raise ConfigError(f"unknown key {prefix}{key}{_closest(str(key), fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _coerce(data[name], hints[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {prefix}{name} ({cls.__name__})")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def parse_value(value: Any, tp: Any, where: str) -> Any:
    """One value checked as type `tp` (a Literal, a number, ...), or a ConfigError naming `where`."""
    return _coerce(value, tp, where)


def to_plain(obj: Any) -> Any:
    """A config object as JSON-ready data (dicts, lists, numbers, strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


def fingerprint(**parts: Any) -> str:
    """sha256 of config objects and other parts: every field takes part, a new one included."""
    return hashlib.sha256(json.dumps(to_plain(parts), sort_keys=True, default=str).encode()).hexdigest()


# Keys any stage may read without declaring them: they change how fast a stage runs (worker
# processes, a Dask cluster, the device), never its outputs, so a change must not rerun it.
UNTRACKED = ("executor", "synthesize.device", "synthesize.workers")


class Params:
    """The parameter tree as a stage entry sees it; with `declared`, only those keys can be read.

    `declared` holds dotted keys as in a dvc.yaml `params:` list: reading a key at or below a
    declared one (or one of UNTRACKED) is allowed, anything else raises ConfigError naming the key.
    """

    def __init__(self, tree: Mapping[str, Any], declared: Iterable[str] | None = None):
        self._tree = tree
        self._declared = None if declared is None else tuple(declared)

    def _check(self, dotted: str) -> None:
        if self._declared is None:
            return
        if not any(dotted == d or dotted.startswith(d + ".") for d in (*self._declared, *UNTRACKED)):
            raise ConfigError(f"reads params key {dotted!r}, which its dvc.yaml stage does not declare "
                              f"(declared: {', '.join(self._declared)})")

    def raw(self, dotted: str, default: Any = dataclasses.MISSING) -> Any:
        """The value at `a.b.c`; ConfigError when missing and no default is given."""
        self._check(dotted)
        node: Any = self._tree
        for i, part in enumerate(dotted.split(".")):
            if not isinstance(node, Mapping) or part not in node:
                if default is not dataclasses.MISSING:
                    return default
                have = list(node) if isinstance(node, Mapping) else []
                parent = ".".join(dotted.split(".")[:i]) or "params.yaml"
                raise ConfigError(f"missing key {dotted} in {parent}{_closest(part, have)}")
            node = node[part]
        return node

    def check_keys(self, dotted: str, cls: type[Any]) -> None:
        """Refuse keys of section `dotted` that `cls` does not have, reading the section's key names
        only: for a section read key by key, whose values the stage partly does not track."""
        node: Any = self._tree
        for part in dotted.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        names = {f.name for f in dataclasses.fields(cls)}
        for key in node if isinstance(node, Mapping) else ():
            if key not in names:
                raise ConfigError(f"unknown key {dotted}.{key}{_closest(str(key), names)}")

    def sections(self, cls: type[T]) -> T:
        """A stage's bundle: each field of `cls` is the top-level section of the same name, parsed as its type."""
        return parse(cls, {f.name: self.raw(f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]

    def parse(self, dotted: str, cls: type[T], **extra: Any) -> T:
        """Section `dotted` parsed as `cls`; `extra` supplies fields that live elsewhere (checked too)."""
        section = self.raw(dotted)
        if section is not None and not isinstance(section, Mapping):
            raise ConfigError(f"{dotted}: expected a mapping, got {section!r}")
        clash = sorted(set(section or {}) & set(extra))
        if clash:
            raise ConfigError(f"unknown key {dotted}.{clash[0]}: it is read from elsewhere, not from {dotted}")
        return parse(cls, {**(section or {}), **extra}, dotted)


DVC_FILE = Path("dvc.yaml")


def _interpolate(text: str, scope: Mapping[str, Any]) -> str:
    """dvc.yaml's `${a.b}` substitution, for the forms this project uses in `params:` lists."""
    out, rest = "", text
    while "${" in rest:
        head, _, tail = rest.partition("${")
        name, _, rest = tail.partition("}")
        node: Any = scope
        for part in name.split("."):
            node = node[part]
        out += head + str(node)
    return out + rest


def declared_params(stage: str, key: str | None, tree: Mapping[str, Any], dvc_file: str | os.PathLike[str] = DVC_FILE) -> list[str]:
    """The dotted params keys that `dvc.yaml` declares for `stage` (`key`: the foreach item)."""
    with open(dvc_file, encoding="utf-8") as f:
        spec = yaml.safe_load(f)["stages"][stage]
    scope: dict[str, Any] = dict(tree)
    if "foreach" in spec:
        if key is None:
            raise ConfigError(f"stage {stage} is a foreach stage: name its item")
        items = _interpolate_value(spec["foreach"], tree)
        if key not in items:
            raise ConfigError(f"no item {key!r} in {stage}'s foreach{_closest(key, items)}; have {sorted(items)}")
        scope.update(key=key, item=items[key])
        spec = spec["do"]
    out = []
    for entry in spec.get("params", []):
        for name in ([entry] if isinstance(entry, str) else [k for v in entry.values() for k in v]):
            out.append(_interpolate(name, scope))
    return out


def _interpolate_value(text: Any, tree: Mapping[str, Any]) -> Any:
    if isinstance(text, str) and text.startswith("${") and text.endswith("}"):
        node: Any = tree
        for part in text[2:-1].split("."):
            node = node[part]
        return node
    return text


def stage_params(stage: str, key: str | None = None, path: str | os.PathLike[str] | None = None) -> Params:
    """`params.yaml` as stage `stage` may read it, with the active recipe applied: only the keys its
    dvc.yaml entry declares. A stage reading a key the recipe sets must declare `recipe` and
    `recipes.${recipe}` too, or DVC would not rerun it when the recipe changes."""
    raw = load_params(path)
    tree = apply_recipe(raw)
    declared = declared_params(stage, key, tree)
    # only the active recipe is declared (`recipes.${recipe}`): DVC records its values alone, which
    # keeps dvc.lock small (DVC rewrites the whole lock after every stage)
    if not {RECIPE, f"{RECIPES}.{raw.get(RECIPE)}"} <= set(declared):
        overlap = [k for k in recipe_keys(raw) if any(k == d or k.startswith(d + ".") or d.startswith(k + ".")
                                                      for d in declared)]
        if overlap:
            raise ConfigError(f"stage {stage} reads {overlap[0]}, which recipe {raw[RECIPE]!r} sets, but its dvc.yaml "
                              f"entry does not declare `{RECIPE}` and `{RECIPES}.${{{RECIPE}}}`")
    return Params(tree, declared)

