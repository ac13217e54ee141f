"""Stage `train_lts@<variant>`: one LTS variant of `lts.variants` -> models/lts/<variant>/.

Reads the mouth crops and audio (data/roi), the speaker conditioning, the k-means units and the prosody
(data/features/*), whose train-split statistics normalise the pitch and energy predictors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import training_main

if TYPE_CHECKING:
    from pipeline.training.runs import V2AConfig

STAGE = "train_lts"


def configure(params: Params, key: str | None = None) -> V2AConfig:
    """`lts.variants.<key>`, the LTS model sizes and loss, `lts.steps`, `train` with `lts.train`, `roi`, `audio`."""
    from pipeline.training.runs import lts_config

    if key is None:
        raise ConfigError("name the variant to train (a key of lts.variants)")
    return lts_config(params, key)


def main(argv: list[str] | None = None) -> int:
    from pipeline.training.runs import train_lts

    return training_main(STAGE, configure, train_lts, argv)


if __name__ == "__main__":
    raise SystemExit(main())
