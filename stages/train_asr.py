"""Stage `train_asr`: the in-domain CTC ASR on the ground-truth train audio -> models/asr/."""
from __future__ import annotations

from pipeline.config import load_params
from pipeline.evaluation.stage import train_asr


def main() -> int:
    train_asr(load_params())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
