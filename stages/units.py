"""DVC stage `units`: k-means speech units (MFCC or HuBERT features) aligned with the roi shards."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from pipeline.config import Params
from pipeline.executor import Executor, ExecutorConfig
from pipeline.features.units import UnitsConfig, run_units
from pipeline.layout import Layout
from stages import feature_outcome, load_config

STAGE = "units"


@dataclass(frozen=True)
class UnitsStageConfig:
    seed: int
    units: UnitsConfig
    executor: ExecutorConfig


def configure(params: Params, key: str | None = None) -> UnitsStageConfig:
    return params.sections(UnitsStageConfig)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog=f"python -m stages.{STAGE}", description=__doc__).parse_args(argv)
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    layout = Layout()
    outcome = run_units(cfg.units, cfg.seed, Executor.from_config(cfg.executor), layout.roi / "shards",
                        layout.features(STAGE))
    return feature_outcome(outcome)


if __name__ == "__main__":
    sys.exit(main())
