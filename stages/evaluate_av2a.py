"""Stage `evaluate_av2a@<variant>`: `stages.evaluate` for the AV2A systems (data/synth/<variant>/)."""
from __future__ import annotations

import sys

from stages import evaluate

STAGE = "evaluate_av2a"
configure = evaluate.configure


def main(argv: list[str] | None = None) -> int:
    return evaluate.main(sys.argv[1:] if argv is None else argv, STAGE)


if __name__ == "__main__":
    raise SystemExit(main())
