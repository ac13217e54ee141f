"""Stage `synthesize@<variant>`: a V2A speaks every split only where an AV2A trains on its speech."""
from __future__ import annotations

import copy
from pathlib import Path

from pipeline.config import Params, load_params
from pipeline.inference.synthesis import SPLITS
from stages.synthesize import configure

TREE = load_params(Path(__file__).resolve().parents[2] / "params.yaml")


def test_a_v2a_speaks_every_split_only_when_an_av2a_builds_on_it():
    bases = {v["base"] for v in TREE["av2a"]["variants"].values()}
    others = set(TREE["v2a"]["variants"]) - bases
    assert bases and others
    evaluated = tuple(TREE["evaluate"]["splits"])
    assert set(evaluated) < set(SPLITS)
    for key in bases:
        assert configure(Params(TREE), key).splits == SPLITS
    for key in others:
        assert configure(Params(TREE), key).splits == evaluated
    # a new AV2A on another base: that base now speaks its training splits too
    tree = copy.deepcopy(TREE)
    key = sorted(others)[0]
    first = next(iter(tree["av2a"]["variants"].values()))
    tree["av2a"]["variants"]["new"] = {**first, "base": key, "family": tree["v2a"]["variants"][key]["family"]}
    assert configure(Params(tree), key).splits == SPLITS
