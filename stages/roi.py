"""Stage `roi`: mouth crops and aligned audio of every usable clip -> `data/roi/`."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from pipeline.config import Params
from pipeline.executor import Executor, ExecutorConfig
from pipeline.layout import Layout
from pipeline.video.landmarks import ModelUnavailable
from pipeline.video.roi import RoiConfig, roi_config, run
from stages import load_config

STAGE = "roi"


@dataclass(frozen=True)
class RoiStageConfig:
    roi: RoiConfig
    executor: ExecutorConfig


def configure(params: Params, key: str | None = None) -> RoiStageConfig:
    return RoiStageConfig(roi_config(params), params.parse("executor", ExecutorConfig))


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog=f"python -m stages.{STAGE}", description=__doc__).parse_args(argv)
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    layout = Layout()
    try:
        summary = run(cfg.roi, Executor.from_config(cfg.executor), layout.manifest, layout.roi)
    except ModelUnavailable as exc:
        print(f"{STAGE}: {exc}", file=sys.stderr)
        return 1
    print(f"{summary.line()} -> {layout.roi}")
    if not summary.clips:
        print(f"{STAGE}: no clip with status ok in {layout.manifest}", file=sys.stderr)
        return 1
    if summary.failed:
        print(f"{STAGE}: {summary.rejected} of {summary.clips} clips rejected, more than roi.max_reject_fraction="
              f"{summary.max_reject_fraction} (reasons in the `reason` column of {layout.roi / 'manifest.parquet'})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
