"""DVC stage `speakers`: GE2E embeddings and leakage-free conditioning embeddings per utterance."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from pipeline.config import Params
from pipeline.executor import Executor, ExecutorConfig
from pipeline.features.speakers import SpeakersConfig, run_speakers
from pipeline.layout import Layout
from stages import feature_outcome, load_config

STAGE = "speakers"


@dataclass(frozen=True)
class SpeakersStageConfig:
    seed: int
    speakers: SpeakersConfig
    executor: ExecutorConfig


def configure(params: Params, key: str | None = None) -> SpeakersStageConfig:
    return params.sections(SpeakersStageConfig)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog=f"python -m stages.{STAGE}", description=__doc__).parse_args(argv)
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    layout = Layout()
    outcome = run_speakers(cfg.speakers, cfg.seed, Executor.from_config(cfg.executor), layout.roi / "shards",
                           layout.features(STAGE))
    return feature_outcome(outcome)


if __name__ == "__main__":
    sys.exit(main())
