"""Every stage of dvc.yaml parses its configuration up front, from exactly the params it declares."""
from __future__ import annotations

import copy
import importlib
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import (
    UNTRACKED,
    ConfigError,
    Params,
    apply_recipe,
    declared_params,
    is_open_mapping,
    load_params,
    recipe_keys,
    stage_params,
)

REPO = Path(__file__).resolve().parents[2]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
TREE = load_params(REPO / "params.yaml")
# Sections whose keys name things (a protocol, a variant, a voice): a new key there is a new item,
# not a typo, so no typo is planted directly inside them (their items' fields are still checked).
NAMED_ITEMS = {"protocols", "recipes", "v2a.variants", "pretrain.families", "corpus.demo.speakers", "v2a.steps",
               "av2a.variants", "av2a.steps", "av2a.robustness", "lts.variants"}


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def _stage_runs() -> list[tuple[str, str | None]]:
    runs: list[tuple[str, str | None]] = []
    for name, spec in DVC.items():
        if "foreach" in spec:
            runs += [(name, key) for key in _lookup(TREE, spec["foreach"][2:-1])]
        else:
            runs.append((name, None))
    return runs


def _module(stage: str) -> Any:
    spec = DVC[stage].get("do", DVC[stage])
    argv = shlex.split(spec["cmd"])
    return importlib.import_module(argv[argv.index("-m") + 1])


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("stage, key", _stage_runs())
def test_stage_reads_only_declared_params(stage, key):
    params = Params(TREE, declared_params(stage, key, TREE))
    config = _module(stage).configure(params, key)  # raises ConfigError on an undeclared read
    assert config == _module(stage).configure(Params(TREE), key)  # and the restriction changes nothing


def _typo_sites(stage: str, key: str | None) -> list[str]:
    sites = []
    for dotted in declared_params(stage, key, TREE):
        for path, _node in _mappings(dotted, _lookup(TREE, dotted)):
            if path not in NAMED_ITEMS:
                sites.append(path)
    return sites


def _mappings(path: str, node: Any) -> list[tuple[str, Any]]:
    if not isinstance(node, Mapping):
        return []
    out = [(path, node)]
    for k, v in node.items():
        out += _mappings(f"{path}.{k}", v)
    return out


def _open_in_file(site: str) -> str | None:
    """For a site inside a recipe that lands on an open mapping of the file (such as
    `model.overrides.wavegan`), the file's path: only the stage reading it can check its keys."""
    parts = site.split(".")
    if parts[0] != "recipes" or len(parts) < 3:
        return None
    path = ".".join(parts[2:])
    return path if is_open_mapping(path, _lookup(TREE, path)) else None


@pytest.mark.parametrize("stage, key", _stage_runs())
def test_a_typo_in_any_declared_section_stops_the_stage_naming_it(stage, key):
    for site in _typo_sites(stage, key):
        tree = copy.deepcopy(TREE)
        _lookup(tree, site)["zz_typo"] = 1
        named = site
        if (path := _open_in_file(site)) is not None:
            tree["recipe"] = site.split(".")[1]  # checked when the recipe is active, by the stage reading it
            if not any(path == d or path.startswith(f"{d}.") for d in declared_params(stage, key, TREE)):
                continue
            named = path
        with pytest.raises(ConfigError, match=f"{named}.zz_typo".replace(".", r"\.")):
            applied = apply_recipe(tree)  # as stage_params reads the file: a recipe's typo stops it here
            _module(stage).configure(Params(applied, declared_params(stage, key, applied)), key)


@pytest.mark.parametrize("recipe", sorted(TREE["recipes"]))
def test_every_stage_runs_under_every_recipe_and_reads_its_values(recipe, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**TREE, "recipe": recipe}), encoding="utf-8")
    keys = recipe_keys({**TREE, "recipe": recipe})
    applied = apply_recipe({**TREE, "recipe": recipe})
    read = set()
    for stage, key in _stage_runs():
        params = stage_params(stage, key, path)  # refuses a stage that reads a recipe's key undeclared
        _module(stage).configure(params, key)
        declared = [*declared_params(stage, key, applied), *UNTRACKED]
        for k in keys:
            if any(k == d or k.startswith(d + ".") for d in declared):
                assert params.raw(k) == _lookup(TREE["recipes"][recipe], k)
                read.add(k)
    assert read == set(keys)  # no value of the recipe is left unread


def test_a_stage_reading_a_recipes_key_must_declare_the_recipe(tmp_path, monkeypatch):
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc["stages"]["train_asr"]["params"] = [p for p in dvc["stages"]["train_asr"]["params"] if not str(p).startswith("recipe")]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc), encoding="utf-8")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**TREE, "recipe": "grid_cpu"}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="stage train_asr reads asr.ctc.epochs, which recipe 'grid_cpu' sets"):
        stage_params("train_asr", None, tmp_path / "params.yaml")


class _Parsed(Exception):
    """Raised by the stand-in for `load_config`: the stage got as far as parsing its config."""


@pytest.mark.parametrize("stage, key", _stage_runs())
def test_every_stage_entry_parses_with_its_own_configure(stage, key, monkeypatch):
    """What `python -m stages.<name>` runs parses the config the module's `configure` gives (a stage entry
    that handed a shared configure its kind but not its own rules once spoke splits nobody evaluates)."""
    import stages

    seen = []

    def record(stage_name, configure, item=None):
        seen.append(configure)
        raise _Parsed

    for module in {stages, importlib.import_module("stages.synthesize"), importlib.import_module("stages.evaluate"),
                   _module(stage)}:
        if hasattr(module, "load_config"):
            monkeypatch.setattr(module, "load_config", record)
    with pytest.raises(_Parsed):
        cmd = shlex.split(DVC[stage].get("do", DVC[stage])["cmd"].replace("${key}", str(key)))
        _module(stage).main(cmd[cmd.index("-m") + 2:])  # the arguments dvc.yaml passes
    assert seen[0](Params(TREE), key) == _module(stage).configure(Params(TREE), key)
