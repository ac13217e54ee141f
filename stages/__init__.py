"""Thin DVC stage entries: `python -m stages.<name>`; all logic lives in `pipeline`."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pipeline.config import ConfigError, Params, stage_params

if TYPE_CHECKING:
    from pipeline.features.stage import Outcome

C = TypeVar("C")


def load_config(stage: str, configure: Callable[[Params, str | None], C], key: str | None = None) -> C | None:
    """The stage's config from the params its dvc.yaml entry declares, parsed before any work;
    None after printing the one-line reason (a typo, a wrong type, a missing key)."""
    try:
        return configure(stage_params(stage, key), key)
    except ConfigError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return None


def feature_outcome(outcome: Outcome) -> int:
    """A per-utterance feature stage's summary line; exit 1 with the one-line reason when too many failed
    (the shards and their failure list are written either way)."""
    print(outcome.line())
    try:
        outcome.check()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
