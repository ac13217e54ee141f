"""Stage `pretrain_a2a@<family>`: audio-only A2A pre-training -> models/a2a/<family>/."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import load_config

if TYPE_CHECKING:
    from pipeline.training.runs import PretrainConfig

STAGE = "pretrain_a2a"


def configure(params: Params, key: str | None = None) -> PretrainConfig:
    """`pretrain.families.<key>`, `pretrain.*`, `train`, `model`, `loss.<key>`, `audio`, `seed`, parsed strictly."""
    from pipeline.training.runs import pretrain_config

    if key is None:
        raise ConfigError("name the family to pre-train (a key of pretrain.families)")
    return pretrain_config(params, key)


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads): on a busy
    # machine spinning threads made CPU training several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m stages.{STAGE} FAMILY", file=sys.stderr)
        return 2
    cfg = load_config(STAGE, configure, argv[0])
    if cfg is None:
        return 2
    from pipeline.layout import Layout
    from pipeline.training.distributed import run_training_stage
    from pipeline.training.runs import pretrain_a2a

    return run_training_stage(f"stages.{STAGE}", argv, cfg.train.devices, lambda: pretrain_a2a(cfg, Layout()))


if __name__ == "__main__":
    raise SystemExit(main())
