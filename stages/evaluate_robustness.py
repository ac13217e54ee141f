"""Stage `evaluate_robustness@<system>`: `stages.evaluate` for the systems of `av2a.robustness`."""
from __future__ import annotations

import sys

from stages import evaluate

STAGE = "evaluate_robustness"
configure = evaluate.configure


def main(argv: list[str] | None = None) -> int:
    return evaluate.main(sys.argv[1:] if argv is None else argv, STAGE)


if __name__ == "__main__":
    raise SystemExit(main())
