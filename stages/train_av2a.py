"""Stage `train_av2a@<variant>`: one AV2A variant of `av2a.variants` -> models/av2a/<variant>/.

Reads its base V2A (models/v2a/<base>/), that base's synthesis of every split (data/synth/<base>/)
and the family's A2A (models/a2a/<family>/, the audio encoder's start).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import training_main

if TYPE_CHECKING:
    from pipeline.training.runs import AV2AConfig

STAGE = "train_av2a"


def configure(params: Params, key: str | None = None) -> AV2AConfig:
    """`av2a.variants.<key>`, its base's family (from `v2a.variants`), that family's loss, `train`, `roi`, `audio`."""
    from pipeline.training.runs import av2a_config

    if key is None:
        raise ConfigError("name the variant to train (a key of av2a.variants)")
    return av2a_config(params, key)


def main(argv: list[str] | None = None) -> int:
    from pipeline.training.runs import train_av2a

    return training_main(STAGE, configure, train_av2a, argv)


if __name__ == "__main__":
    raise SystemExit(main())
