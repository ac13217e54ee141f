"""DVC stage `units`: k-means speech units (MFCC or HuBERT features) aligned with the roi shards."""
from __future__ import annotations

from pipeline.config import load_params
from pipeline.executor import Executor
from pipeline.features.units import UnitsConfig, run_units


def main() -> None:
    params = load_params()
    outcome = run_units(UnitsConfig.from_params(params), Executor.from_params(params))
    print(outcome.line())
    outcome.check()


if __name__ == "__main__":
    main()
