"""`params.yaml` is written in the form DVC writes back: an experiment's `-S` changes only its key."""
from __future__ import annotations

import difflib
import shutil

import paths
import pytest
import yaml
from dvc.utils.hydra import apply_overrides


def _changed_lines(tmp_path, *overrides: str) -> tuple[list[str], list[str]]:
    path = tmp_path / "params.yaml"
    shutil.copy(paths.PARAMS, path)
    apply_overrides(str(path), list(overrides))  # what `dvc exp run -S` does to the file
    before, after = paths.PARAMS.read_text().splitlines(), path.read_text().splitlines()
    diff = [d for d in difflib.unified_diff(before, after, lineterm="", n=0) if d[:1] in "+-" and d[:3] not in ("+++", "---")]
    return [d[1:] for d in diff if d[0] == "-"], [d[1:] for d in diff if d[0] == "+"]


@pytest.mark.parametrize("override, old, new", [
    ("corpus.name=grid", "  name: demo ", "  name: grid "),
    ("train.lr=0.001", "  lr: 3.0e-4", "  lr: 0.001"),
    ("v2a.variants.melspec_scratch.separate_bn=false", "      separate_bn: true", "      separate_bn: false"),
    ("corpus.grid.source=/data/grid", "    source: sheffield", "    source: /data/grid"),
])
def test_one_override_changes_one_line(tmp_path, override, old, new):
    removed, added = _changed_lines(tmp_path, override)
    assert len(removed) == len(added) == 1, (removed, added)
    assert removed[0].startswith(old) and added[0].startswith(new)


def test_a_list_override_changes_only_that_list(tmp_path):
    removed, added = _changed_lines(tmp_path, "corpus.grid.speakers=[s1]")
    assert removed == ["    - s2"] and added == []


def test_an_override_keeps_every_value_and_comment_elsewhere(tmp_path):
    _changed_lines(tmp_path, "seed=0")  # a no-op override rewrites the file in DVC's form: the same text
    assert (tmp_path / "params.yaml").read_text() == paths.PARAMS.read_text()
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == yaml.safe_load(paths.PARAMS.read_text())
