"""Stage `synthesize_robustness@<system>`: an AV2A given only some of its inputs (`av2a.robustness`)
speaks the evaluated splits -> data/synth/<system>/ (its card lists the inputs it was given)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import synthesize

if TYPE_CHECKING:
    from pipeline.inference.synthesis import SynthesizeConfig

STAGE = "synthesize_robustness"
KIND = "av2a"


@dataclass(frozen=True)
class RobustnessEntry:
    """An `av2a.robustness` entry."""

    av2a: str  # an av2a.variants key
    base: str  # that variant's base (dvc.yaml names its synthesis as a dependency)
    inputs: tuple[str, ...]


def configure(params: Params, key: str | None = None) -> SynthesizeConfig:
    from pipeline.inference.synthesis import synthesize_config

    if key is None:
        raise ConfigError("name the system to synthesise (a key of av2a.robustness)")
    entry = params.parse(f"av2a.robustness.{key}", RobustnessEntry)
    base = params.raw(f"av2a.variants.{entry.av2a}.base")
    if base != entry.base:
        raise ConfigError(f"av2a.robustness.{key}.base: {entry.base!r}, but av2a.variants.{entry.av2a}.base is {base!r}")
    return synthesize_config(params, KIND, key, model=entry.av2a, inputs=entry.inputs,
                             splits=params.raw("evaluate.splits"))


def main(argv: list[str] | None = None) -> int:
    return synthesize.main(argv, STAGE, configure)


if __name__ == "__main__":
    raise SystemExit(main())
