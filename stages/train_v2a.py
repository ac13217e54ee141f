"""Stage `train_v2a@<variant>`: one V2A variant of `v2a.variants` -> models/v2a/<variant>/.

With `train.devices` > 1 it relaunches itself under torchrun (DDP); on several nodes, run
`torchrun --nnodes N --nproc_per_node G --rdzv_endpoint HOST:PORT -m stages.train_v2a VARIANT`.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import load_config

if TYPE_CHECKING:
    from pipeline.training.runs import V2AConfig

STAGE = "train_v2a"


def configure(params: Params, key: str | None = None) -> V2AConfig:
    """`v2a.variants.<key>` (by its family's variant class), its family's model and loss, `train`, `roi`, `audio`."""
    from pipeline.training.runs import v2a_config

    if key is None:
        raise ConfigError("name the variant to train (a key of v2a.variants)")
    return v2a_config(params, key)


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads): on a busy
    # machine spinning threads made CPU training several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m stages.{STAGE} VARIANT", file=sys.stderr)
        return 2
    cfg = load_config(STAGE, configure, argv[0])
    if cfg is None:
        return 2
    from pipeline.layout import Layout
    from pipeline.training.distributed import run_training_stage
    from pipeline.training.runs import train_v2a

    return run_training_stage(f"stages.{STAGE}", argv, cfg.train.devices, lambda: train_v2a(cfg, Layout()))


if __name__ == "__main__":
    raise SystemExit(main())
