"""Stage `evaluate@<variant>` (one V2A variant) or `evaluate_references` (`--references`).

Writes `data/eval/<system>.parquet` (per utterance), `data/eval/samples/<system>.parquet`,
`reports/metrics/<system>.json` and `reports/plots/<system>/`.
"""
from __future__ import annotations

import sys

from pipeline.config import load_params
from pipeline.evaluation.stage import evaluate_references, evaluate_variant


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m stages.evaluate VARIANT | --references", file=sys.stderr)
        return 2
    if argv[0] == "--references":
        evaluate_references(load_params())
    else:
        evaluate_variant(load_params(), argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
