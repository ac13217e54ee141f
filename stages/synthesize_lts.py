"""Stage `synthesize_lts@<variant>`: every split through models/lts/<variant> -> data/synth/<variant>/.

The model reads the video and the speaker conditioning only; the units and prosody it predicted go
into the synthesis shards beside the audio (docs/DATA.md), for evaluation to score.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import Params
from stages import synthesize

if TYPE_CHECKING:
    from pipeline.inference.synthesis import SynthesizeConfig

STAGE = "synthesize_lts"
KIND = "lts"


def configure(params: Params, key: str | None = None) -> SynthesizeConfig:
    return synthesize.configure(params, key, KIND)


def main(argv: list[str] | None = None) -> int:
    return synthesize.main(argv, STAGE, KIND)


if __name__ == "__main__":
    raise SystemExit(main())
