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

from pipeline.config import ConfigError, Params, declared_params, load_params

REPO = Path(__file__).resolve().parents[2]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
TREE = load_params(REPO / "params.yaml")
# Sections whose keys name things (a protocol, a variant, a voice): a new key there is a new item,
# not a typo, so no typo is planted directly inside them (their items' fields are still checked).
NAMED_ITEMS = {"protocols", "v2a.variants", "pretrain.families", "corpus.demo.speakers", "v2a.steps"}


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


@pytest.mark.parametrize("stage, key", _stage_runs())
def test_a_typo_in_any_declared_section_stops_the_stage_naming_it(stage, key):
    for site in _typo_sites(stage, key):
        tree = copy.deepcopy(TREE)
        _lookup(tree, site)["zz_typo"] = 1
        with pytest.raises(ConfigError, match=f"{site}.zz_typo".replace(".", r"\.")):
            _module(stage).configure(Params(tree, declared_params(stage, key, tree)), key)
