"""DVC stage `prosody`: F0, voicing and energy per mel frame, with train-only speaker statistics."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from pipeline.audio.mel import AudioConfig
from pipeline.config import Params
from pipeline.executor import Executor, ExecutorConfig
from pipeline.features.prosody import ProsodyConfig, run_prosody
from pipeline.layout import Layout
from stages import feature_outcome, load_config

STAGE = "prosody"


@dataclass(frozen=True)
class ProsodyStageConfig:
    prosody: ProsodyConfig
    audio: AudioConfig
    executor: ExecutorConfig


def configure(params: Params, key: str | None = None) -> ProsodyStageConfig:
    return params.sections(ProsodyStageConfig)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog=f"python -m stages.{STAGE}", description=__doc__).parse_args(argv)
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    layout = Layout()
    outcome = run_prosody(cfg.audio.mel, cfg.prosody, Executor.from_config(cfg.executor), layout.roi / "shards",
                          layout.features(STAGE))
    return feature_outcome(outcome)


if __name__ == "__main__":
    sys.exit(main())
