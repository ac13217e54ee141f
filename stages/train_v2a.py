"""Stage `train_v2a@<variant>`: one V2A variant of `v2a.variants` -> models/v2a/<variant>/.

With `train.devices` > 1 it relaunches itself under torchrun (DDP); on several nodes, run
`torchrun --nnodes N --nproc_per_node G --rdzv_endpoint HOST:PORT -m stages.train_v2a VARIANT`.
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads): on a busy
    # machine spinning threads made CPU training several times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pipeline.config import load_params
    from pipeline.training.runs import run_stage, train_v2a

    argv = sys.argv[1:] if argv is None else argv
    return run_stage("stages.train_v2a", argv, train_v2a, load_params(), usage="VARIANT")


if __name__ == "__main__":
    raise SystemExit(main())
