"""Stage `evaluate_lts@<variant>`: `stages.evaluate` for the LTS systems (data/synth/<variant>/), which also
scores the units, pitch and energy they predicted against data/features/{units,prosody}."""
from __future__ import annotations

import sys

from stages import evaluate

STAGE = "evaluate_lts"
configure = evaluate.configure


def main(argv: list[str] | None = None) -> int:
    return evaluate.main(sys.argv[1:] if argv is None else argv, STAGE)


if __name__ == "__main__":
    raise SystemExit(main())
