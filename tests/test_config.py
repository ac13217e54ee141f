"""The strict params parser: unknown keys, wrong types, missing keys, declared-only reads."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pytest

from pipeline.config import (
    ConfigError,
    Params,
    apply_recipe,
    declared_params,
    fingerprint,
    load_params,
    parse,
    recipe_keys,
)


@dataclass(frozen=True)
class Inner:
    beam: float
    mode: Literal["fast", "exact"]


@dataclass(frozen=True)
class Outer:
    size: int
    gray: bool
    name: str | None
    widths: tuple[int, ...]
    inner: Inner
    table: Mapping[str, int]
    optional: int = 3
    extra: tuple[str, ...] = field(default=())


GOOD = {"size": 96, "gray": True, "name": None, "widths": [1, 2], "inner": {"beam": 1, "mode": "fast"},
        "table": {"a": 1}}


def test_parses_nested_typed_values():
    cfg = parse(Outer, GOOD, "roi")
    assert cfg.widths == (1, 2) and cfg.inner == Inner(1.0, "fast") and isinstance(cfg.inner.beam, float)
    assert dict(cfg.table) == {"a": 1} and cfg.optional == 3
    with pytest.raises(TypeError):
        cfg.table["b"] = 2  # type: ignore[index]  # read-only, like the frozen dataclass around it


@pytest.mark.parametrize("change, message", [
    ({"sise": 96}, "unknown key roi.sise (did you mean 'size'?)"),
    ({"inner": {"beam": 1, "mode": "fast", "bem": 2}}, "unknown key roi.inner.bem (did you mean 'beam'?)"),
    ({"size": "96"}, "roi.size: expected an integer, got '96'"),
    ({"size": True}, "roi.size: expected an integer"),
    ({"gray": 1}, "roi.gray: expected true or false"),
    ({"widths": [1, "x"]}, "roi.widths[1]: expected an integer"),
    ({"inner": {"beam": 1, "mode": "slow"}}, "roi.inner.mode: 'slow' is not one of ['fast', 'exact']"),
    ({"table": {"a": 1.5}}, "roi.table.a: expected an integer"),
])
def test_every_mistake_names_its_key(change, message):
    with pytest.raises(ConfigError) as err:
        parse(Outer, {**GOOD, **change}, "roi")
    assert message in str(err.value)


def test_missing_key_is_an_error_unless_it_has_a_code_default():
    data = dict(GOOD)
    del data["gray"]
    with pytest.raises(ConfigError, match="missing key roi.gray"):
        parse(Outer, data, "roi")


def test_params_refuses_undeclared_keys_and_names_typos():
    tree = {"roi": {"size": 96}, "seed": 0, "executor": {"workers": 2}}
    params = Params(tree, declared=["roi"])
    assert params.raw("roi.size") == 96 and params.raw("executor.workers") == 2  # executor: speed only
    with pytest.raises(ConfigError, match="does not declare"):
        params.raw("seed")
    with pytest.raises(ConfigError, match=r"missing key roi\.sise in roi \(did you mean 'size'\?\)"):
        params.raw("roi.sise")
    assert Params(tree).raw("seed") == 0  # unrestricted


def test_declared_params_expand_foreach_items():
    tree = load_params()
    variant = next(iter(tree["v2a"]["variants"]))
    family = tree["v2a"]["variants"][variant]["family"]
    keys = declared_params("train_v2a", variant, tree)
    assert f"v2a.variants.{variant}" in keys and f"loss.{family}" in keys and f"model.overrides.{family}" in keys
    with pytest.raises(ConfigError, match="no item 'nope'"):
        declared_params("train_v2a", "nope", tree)


def test_fingerprint_covers_every_field():
    a = parse(Outer, GOOD, "roi")
    b = parse(Outer, {**GOOD, "optional": 4}, "roi")
    assert fingerprint(cfg=a) == fingerprint(cfg=parse(Outer, GOOD, "roi")) != fingerprint(cfg=b)


def test_a_recipe_rewrites_existing_keys_and_refuses_new_ones():
    tree = {"train": {"lr": 1.0, "steps": 5}, "model": {"overrides": {}}, "recipe": "fast",
            "recipes": {"plain": {}, "fast": {"train": {"lr": 2.0}, "model": {"overrides": {"width": 8}}}}}
    applied = apply_recipe(tree)
    assert applied["train"] == {"lr": 2.0, "steps": 5} and applied["model"]["overrides"] == {"width": 8}
    assert tree["train"]["lr"] == 1.0  # the file's tree is left as it was
    assert recipe_keys(tree) == ["train.lr", "model.overrides.width"]
    assert apply_recipe({**tree, "recipe": "plain"})["train"]["lr"] == 1.0 and recipe_keys({**tree, "recipe": "plain"}) == []
    with pytest.raises(ConfigError, match=r"unknown key recipes\.fast\.train\.lrr: params.yaml has no key train\.lrr \(did you mean 'lr'\?\)"):
        apply_recipe({**tree, "recipes": {"fast": {"train": {"lrr": 2.0}}}})
    with pytest.raises(ConfigError, match=r"recipe 'fats' is not a key of recipes \(did you mean 'fast'\?\)"):
        apply_recipe({**tree, "recipe": "fats"})


def test_a_recipe_adds_fields_to_a_model_override_the_file_already_fills():
    tree = {"model": {"overrides": {"wavegan": {"depth": 3}}}, "recipe": "small",
            "recipes": {"small": {"model": {"overrides": {"wavegan": {"width": 8}}}}}}
    assert apply_recipe(tree)["model"]["overrides"]["wavegan"] == {"depth": 3, "width": 8}
    with pytest.raises(ConfigError, match=r"unknown key recipes\.small\.model\.depth"):
        apply_recipe({**tree, "recipes": {"small": {"model": {"depth": 8}}}})
