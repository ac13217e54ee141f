"""Stage `synthesize_lts@<variant>`: every split through models/lts/<variant> -> data/synth/<variant>/.

The model reads the video and the speaker conditioning only; the units and prosody it predicted go
into the synthesis shards beside the audio (docs/DATA.md), for evaluation to score.
"""
from __future__ import annotations

from functools import partial

from stages import synthesize

STAGE = "synthesize_lts"
KIND = "lts"
configure = partial(synthesize.configure, kind=KIND)
main = partial(synthesize.main, stage=STAGE, kind=KIND)

if __name__ == "__main__":
    raise SystemExit(main())
