"""Stage `synthesize@<variant>`: models/v2a/<variant> speaks -> data/synth/<variant>/: every split for the base
of an AV2A (its training input), the evaluated splits for any other variant.

`stages.synthesize_av2a` runs the same code for models/av2a/<variant>."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from pipeline.config import ConfigError, Params
from stages import load_config

if TYPE_CHECKING:
    from pipeline.inference.synthesis import SynthesizeConfig

STAGE = "synthesize"
KIND = "v2a"  # this stage speaks the models of `v2a.variants`


def _synthesis(params: Params, key: str | None, kind: str) -> SynthesizeConfig:
    """`synthesize.*` (device and workers are untracked: they change the speed only) and `executor`."""
    from pipeline.inference.synthesis import synthesize_config

    if key is None:
        raise ConfigError(f"name the variant to synthesise with (a key of {kind}.variants)")
    return synthesize_config(params, kind, key)


def configure(params: Params, key: str | None = None) -> SynthesizeConfig:
    """As `configure_evaluated`, but every split for a V2A that an AV2A builds on (`av2a.variants.*.base`):
    its speech of the training splits is that AV2A's training input."""
    from pipeline.training.procedures import AV2AVariant

    bases = {params.parse(f"av2a.variants.{name}", AV2AVariant).base for name in params.raw("av2a.variants")}
    return _synthesis(params, key, KIND) if key in bases else configure_evaluated(params, key, KIND)


def configure_evaluated(params: Params, key: str | None, kind: str) -> SynthesizeConfig:
    """`synthesize.*` and `executor`, for the evaluated splits only (`evaluate.splits`): a model whose speech
    of the training splits nothing reads."""
    return replace(_synthesis(params, key, kind), splits=tuple(params.raw("evaluate.splits")))


def main(argv: list[str] | None = None, stage: str = STAGE,
         configured: Callable[[Params, str | None], SynthesizeConfig] = configure) -> int:
    """`configured`: the stage's own configure."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m stages.{stage} VARIANT", file=sys.stderr)
        return 2
    # Idle OpenMP threads yield the CPU instead of spinning (read when torch loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = load_config(stage, configured, argv[0])
    if cfg is None:
        return 2
    from pipeline.inference.synthesis import synthesize_system
    from pipeline.layout import Layout

    start = time.perf_counter()
    info = synthesize_system(cfg, Layout())
    counts = ", ".join(f"{s} {n}" for s, n in info["utterances"].items())
    print(f"synthesize {cfg.system}: {counts} utterances in {time.perf_counter() - start:.1f} s with "
          f"{info['vocoder'] or info['family']}"
          f" (model sha256 {info['model_sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
