"""Stage `synthesize_lts@<variant>`: the evaluated splits (`evaluate.splits`) through models/lts/<variant>
-> data/synth/<variant>/.

The model reads the video and the speaker conditioning only; the units and prosody it predicted go
into the synthesis shards beside the audio (docs/DATA.md), for evaluation to score.
"""
from __future__ import annotations

from functools import partial

from stages import synthesize

STAGE = "synthesize_lts"
KIND = "lts"
configure = partial(synthesize.configure_evaluated, kind=KIND)


def main(argv: list[str] | None = None) -> int:
    return synthesize.main(argv, STAGE, configure)


if __name__ == "__main__":
    raise SystemExit(main())
