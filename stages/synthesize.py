"""Stage `synthesize@<variant>`: every split through models/v2a/<variant> -> data/synth/<variant>/."""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m stages.synthesize VARIANT", file=sys.stderr)
        return 2
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pipeline.config import load_params
    from pipeline.training.runs import synthesize_variant

    info = synthesize_variant(load_params(), argv[0])
    counts = ", ".join(f"{s} {n}" for s, n in info["utterances"].items())
    print(f"synthesize {argv[0]}: {counts} utterances in {info['seconds']} s with {info['vocoder'] or info['family']}"
          f" (model sha256 {info['model_sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
