"""Stage `synthesize_av2a@<variant>`: the evaluated splits (`evaluate.splits`) through models/av2a/<variant> -> data/synth/<variant>/.

The AV2A reads the video and its base V2A's synthesis (data/synth/<base>/), never ground-truth audio.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pipeline.config import Params
from stages import synthesize

if TYPE_CHECKING:
    from pipeline.inference.synthesis import SynthesizeConfig

STAGE = "synthesize_av2a"
KIND = "av2a"


def configure(params: Params, key: str | None = None) -> SynthesizeConfig:
    # Nothing reads an AV2A's speech of the training splits: only the evaluated splits are spoken.
    return replace(synthesize.configure(params, key, KIND), splits=tuple(params.raw("evaluate.splits")))


def main(argv: list[str] | None = None) -> int:
    return synthesize.main(argv, STAGE, KIND)


if __name__ == "__main__":
    raise SystemExit(main())
