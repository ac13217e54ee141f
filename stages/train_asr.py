"""Stage `train_asr`: the in-domain CTC ASR on the ground-truth train audio -> models/asr/."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import load_config

if TYPE_CHECKING:
    from pipeline.evaluation.asr_ctc import TrainAsrConfig

STAGE = "train_asr"


def configure(params: Params, key: str | None = None) -> TrainAsrConfig:
    """`asr.ctc`, `audio`, `seed` (and the untracked `executor`), parsed strictly."""
    from pipeline.audio.mel import AudioConfig
    from pipeline.evaluation.asr_ctc import CTCConfig, TrainAsrConfig
    from pipeline.executor import ExecutorConfig

    seed = params.raw("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    return TrainAsrConfig(params.parse("asr.ctc", CTCConfig), params.parse("audio", AudioConfig), seed,
                          params.parse("executor", ExecutorConfig))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print(f"usage: python -m stages.{STAGE}", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = load_config(STAGE, configure)
    if cfg is None:
        return 2
    import torch

    from pipeline.evaluation.asr_ctc import train_in_domain
    from pipeline.inference.vocoder import resolve_device
    from pipeline.layout import Layout

    if resolve_device(cfg.ctc.device).type == "cpu":
        # The BiGRU's per-time-step kernels are too small to split across cores: on a 2-core machine one
        # thread ran 6 demo epochs in 6.3 s, two threads in 14.0 s (same validation WER).
        torch.set_num_threads(1)
    train_in_domain(cfg, Layout())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
