"""Stage `vocoder`: HiFi-GAN on the corpus's ground-truth log-mels -> models/vocoder/."""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads): on a busy
    # machine spinning threads made CPU training several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pipeline.config import load_params
    from pipeline.training.runs import run_stage, train_vocoder

    argv = sys.argv[1:] if argv is None else argv
    return run_stage("stages.vocoder", argv, train_vocoder, load_params())


if __name__ == "__main__":
    raise SystemExit(main())
