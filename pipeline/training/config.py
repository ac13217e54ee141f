"""The training configuration: params.yaml `train:` merged with a stage's own overrides.

`TrainConfig` mirrors the `train:` section field for field, with no defaults of its own:
params.yaml is the one place for them. A stage's override block (`v2a.train`,
`vocoder.train`, `pretrain.families.<family>.train`) may change any `train:` key and nothing
else; `steps` comes from the stage's own section and `seed` from the top-level `seed:`.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config import ConfigError, Params, parse

# Filled in by the stage, not by the `train:` section or an override of it.
_STAGE_FIELDS = ("steps", "seed")


@dataclass(frozen=True)
class LoopConfig:
    """What the training loop itself needs, whatever the model: length, seed, precision, cadence."""

    steps: int
    seed: int
    clip_norm: float | None  # gradient norm clipping per optimiser (None: off)
    amp: bool  # bf16 autocast on CUDA
    log_every: int
    val_every: int  # also at the last step
    checkpoint_every: int  # also at the last step
    keep_checkpoints: int
    device: str = "auto"  # auto (CUDA when present, one per process) | cpu | cuda


@dataclass(frozen=True)
class TrainConfig:
    """params.yaml `train:` (with the stage's overrides) plus the stage's step count and the seed."""

    steps: int
    seed: int
    batch_size: int  # per process
    window_frames: int  # random training windows of this many video frames
    lr: float  # generator
    lr_d: float  # discriminators
    betas: tuple[float, float]
    weight_decay: float
    warmup_steps: int
    final_lr_ratio: float  # cosine decay to this fraction of lr over the run (1.0: constant)
    clip_norm: float | None
    log_every: int
    val_every: int
    val_utterances: int  # whole `val` utterances per validation
    checkpoint_every: int
    keep_checkpoints: int
    devices: int  # >1: the stage relaunches itself under torchrun
    num_workers: int  # DataLoader worker processes
    cache_mb: int  # decoded utterances kept in memory per process (speed only)
    amp: bool

    def loop(self) -> LoopConfig:
        return LoopConfig(self.steps, self.seed, self.clip_norm, self.amp, self.log_every, self.val_every,
                          self.checkpoint_every, self.keep_checkpoints)

    def lr_lambda(self) -> Callable[[int], float]:
        """Linear warm-up then cosine decay to `final_lr_ratio` of the base rate."""
        warmup, steps, final = self.warmup_steps, self.steps, self.final_lr_ratio

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, steps - warmup))
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return factor


# Any `train:` key, optional: what an override block may hold (types are checked once merged).
_TrainKeys = dataclasses.make_dataclass(
    "TrainKeys", [(f.name, Any, dataclasses.field(default=None)) for f in dataclasses.fields(TrainConfig)
                  if f.name not in _STAGE_FIELDS], frozen=True)


def train_config(params: Params, steps: int, override: str | None = None) -> TrainConfig:
    """`train:` with the override block at `override` (a dotted key; may be absent) applied.

    An unknown key in the override is an error naming the override's own path.
    """
    base = params.raw("train")
    if not isinstance(base, Mapping):
        raise ConfigError(f"train: expected a mapping, got {base!r}")
    own: Any = params.raw(override, default=None) if override else None
    if own is None:
        own = {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"{override}: expected a mapping of train: keys, got {own!r}")
    for where, section in (("train", base), (override, own)):
        parse(_TrainKeys, section, where)  # unknown keys, named at their own path
    seed = params.raw("seed")
    return parse(TrainConfig, {**base, **own, "steps": steps, "seed": seed}, "train")
