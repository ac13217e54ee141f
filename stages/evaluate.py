"""Stage `evaluate@<system>` (any synthesised system) or `evaluate_references` (`--references`).

Writes `data/eval/<system>.parquet` (per utterance), `data/eval/samples/<system>.parquet`,
`reports/metrics/<system>.json` and `reports/plots/<system>/`.
"""
from __future__ import annotations

import sys

from pipeline.config import Params
from pipeline.evaluation.config import EvaluationConfig, evaluation_config
from pipeline.evaluation.stage import evaluate_references, evaluate_system
from pipeline.layout import Layout
from stages import load_config

STAGE = "evaluate"
REFERENCES_STAGE = "evaluate_references"


def configure(params: Params, key: str | None = None) -> EvaluationConfig:
    """The config of `evaluate@<key>`, or of `evaluate_references` when `key` is None."""
    return evaluation_config(params, references=key is None)


def main(argv: list[str] | None = None, system_stage: str = STAGE) -> int:
    """`system_stage`: the dvc.yaml stage whose foreach names the system (`evaluate`, `evaluate_av2a`)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m stages.{system_stage} SYSTEM | --references", file=sys.stderr)
        return 2
    key = None if argv[0] == "--references" else argv[0]
    stage = system_stage if key is not None else REFERENCES_STAGE
    cfg = load_config(stage, configure, key)
    if cfg is None:
        return 2
    if key is None:
        evaluate_references(cfg, Layout())
    else:
        evaluate_system(key, cfg, Layout())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
