"""The models' and training's test settings, all from the real params.yaml (params.yaml is the one place for defaults)."""
from __future__ import annotations

import dataclasses
from typing import Any

import paths

from pipeline.audio.mel import AudioConfig
from pipeline.config import Params, load_params
from pipeline.families import get_family
from pipeline.training.config import TrainConfig, train_config
from pipeline.training.vocoder import VocoderLoss

TREE = load_params(paths.PARAMS)
PARAMS = Params(TREE)
AUDIO = PARAMS.parse("audio", AudioConfig)
MEL = AUDIO.mel


def train_cfg(steps: int = 2, **changes: Any) -> TrainConfig:
    """params.yaml's `train:` for a run of `steps`, with `changes` (e.g. a test's small batch)."""
    return dataclasses.replace(train_config(PARAMS, steps), **changes)


def model_cfg(family: str, profile: str = "demo", overrides: dict[str, Any] | None = None, **data: Any) -> Any:
    return get_family(family).model_config(profile, AUDIO, overrides, **data)


def loss(family: str) -> Any:
    """params.yaml's loss weights of `family`."""
    return PARAMS.parse(f"loss.{family}", get_family(family).loss_class)


def vocoder_loss() -> VocoderLoss:
    return PARAMS.parse("loss.vocoder", VocoderLoss)
