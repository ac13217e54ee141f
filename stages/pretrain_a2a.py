"""Stage `pretrain_a2a@<family>`: audio-only A2A pre-training -> models/a2a/<family>/."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import training_main

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
    from pipeline.training.runs import pretrain_a2a

    return training_main(STAGE, configure, pretrain_a2a, argv, "FAMILY")


if __name__ == "__main__":
    raise SystemExit(main())
