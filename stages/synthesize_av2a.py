"""Stage `synthesize_av2a@<variant>`: every split through models/av2a/<variant> -> data/synth/<variant>/.

The AV2A reads the video and its base V2A's synthesis (data/synth/<base>/), never ground-truth audio.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import Params
from stages import synthesize

if TYPE_CHECKING:
    from pipeline.inference.synthesis import SynthesizeConfig

STAGE = "synthesize_av2a"
KIND = "av2a"


def configure(params: Params, key: str | None = None) -> SynthesizeConfig:
    return synthesize.configure(params, key, KIND)


def main(argv: list[str] | None = None) -> int:
    return synthesize.main(argv, STAGE, KIND)


if __name__ == "__main__":
    raise SystemExit(main())
