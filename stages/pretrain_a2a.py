"""Stage `pretrain_a2a@<family>`: audio-only A2A pre-training -> models/a2a/<family>/."""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads): on a busy
    # machine spinning threads made CPU training several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pipeline.config import load_params
    from pipeline.training.runs import pretrain_a2a, run_stage

    argv = sys.argv[1:] if argv is None else argv
    return run_stage("stages.pretrain_a2a", argv, pretrain_a2a, load_params(), usage="FAMILY")


if __name__ == "__main__":
    raise SystemExit(main())
