"""Reading `params.yaml`: one place, so every stage sees the same values."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path(os.environ.get("V2S_PARAMS", "params.yaml"))


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the whole parameter tree of `params.yaml` (or `path`)."""
    with open(path or PARAMS_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def get(params: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """Look up `a.b.c` in a nested dict, returning `default` when any part is missing."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
