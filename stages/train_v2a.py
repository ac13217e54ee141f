"""Stage `train_v2a@<variant>`: one V2A variant of `v2a.variants` -> models/v2a/<variant>/.

With `train.devices` > 1 it relaunches itself under torchrun (DDP); on several nodes, run
`torchrun --nnodes N --nproc_per_node G --rdzv_endpoint HOST:PORT -m stages.train_v2a VARIANT`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import training_main

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
    from pipeline.training.runs import train_v2a

    return training_main(STAGE, configure, train_v2a, argv)


if __name__ == "__main__":
    raise SystemExit(main())
