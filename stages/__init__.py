"""Thin DVC stage entries: `python -m stages.<name>`; all logic lives in `pipeline`."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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


def training_main(stage: str, configure: Callable[[Params, str | None], C], train: Callable[[C, Any], Path],
                  argv: list[str] | None = None, item: str = "VARIANT") -> int:
    """Entry of a training stage over `item`s (`python -m stages.<stage> ITEM`): parse its config, then
    `train(cfg, Layout())`, under torchrun when `train.devices` > 1."""
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads): on a busy
    # machine spinning threads made CPU training several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m stages.{stage} {item}", file=sys.stderr)
        return 2
    cfg = load_config(stage, configure, argv[0])
    if cfg is None:
        return 2
    from pipeline.layout import Layout
    from pipeline.training.distributed import run_training_stage

    return run_training_stage(f"stages.{stage}", argv, cfg.train.devices, lambda: train(cfg, Layout()))  # type: ignore[attr-defined]
