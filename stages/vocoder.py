"""Stage `vocoder`: HiFi-GAN on the corpus's ground-truth log-mels -> models/vocoder/."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from pipeline.config import Params
from stages import load_config

if TYPE_CHECKING:
    from pipeline.training.runs import VocoderConfig

STAGE = "vocoder"


def configure(params: Params, key: str | None = None) -> VocoderConfig:
    """`vocoder`, `train`, `model.profile`, `model.overrides.hifigan`, `loss.vocoder`, `audio`, `seed`."""
    from pipeline.training.runs import vocoder_config

    return vocoder_config(params)


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads): on a busy
    # machine spinning threads made CPU training several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print(f"usage: python -m stages.{STAGE}", file=sys.stderr)
        return 2
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    from pipeline.layout import Layout
    from pipeline.training.distributed import run_training_stage
    from pipeline.training.runs import train_vocoder

    return run_training_stage(f"stages.{STAGE}", argv, cfg.train.devices, lambda: train_vocoder(cfg, Layout()))


if __name__ == "__main__":
    raise SystemExit(main())
