"""Stage `synthesize_av2a@<variant>`: the evaluated splits (`evaluate.splits`) through models/av2a/<variant> -> data/synth/<variant>/.

The AV2A reads the video and its base V2A's synthesis (data/synth/<base>/), never ground-truth audio.
"""
from __future__ import annotations

from functools import partial

from stages import synthesize

STAGE = "synthesize_av2a"
KIND = "av2a"
configure = partial(synthesize.configure_evaluated, kind=KIND)


def main(argv: list[str] | None = None) -> int:
    return synthesize.main(argv, STAGE, configure)


if __name__ == "__main__":
    raise SystemExit(main())
