"""The `Family` interface: what a model family declares so generic code can train and run it.

The generic stage code (`pipeline.training.runs`, `pipeline.inference`) never asks which family
it holds. It parses the family's config classes, windows the streams the family reads, builds
its models and their training `Task`, exports them with a model card, and has the family turn
a batch into speech. A family makes models of one or more kinds (`a2a`, `v2a`, ...; the
`models/<kind>/` directory and the card's `kind`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from pipeline.audio.mel import AudioConfig
from pipeline.config import ConfigError
from pipeline.inference.card import ModelCard
from pipeline.inference.vocoder import Vocoder
from pipeline.layout import Layout
from pipeline.models.config import sized
from pipeline.streams import Catalog, Stream, frame_rates
from pipeline.training.config import TrainConfig
from pipeline.training.task import Context, Task


@dataclass(frozen=True)
class Init:
    """Weights a model starts from (e.g. a pre-trained decoder) and their identity for cards and fingerprints."""

    state: Mapping[str, torch.Tensor]
    identity: Mapping[str, Any]


class Family(ABC):
    """A model family: its configuration, its models, how they train and how they speak."""

    name: ClassVar[str]
    config_class: ClassVar[type]  # model sizes: a `model.profile` preset with `model.overrides.<name>` applied
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]  # profile -> fields over config_class's defaults
    loss_class: ClassVar[type]  # typed loss weights: params `loss.<name>`
    variant_class: ClassVar[type]  # one `v2a.variants` entry of this family (its `family` key included)
    kinds: ClassVar[tuple[str, ...]]  # the kinds of model it makes
    reads: ClassVar[Mapping[str, tuple[str, ...]]]  # per kind: the streams a training step reads
    inputs: ClassVar[Mapping[str, tuple[str, ...]]]  # per kind: the streams it reads at inference
    vocoded: ClassVar[bool]  # its models write log-mels that synthesis hands to the vocoder

    def derived(self, audio: AudioConfig) -> dict[str, Any]:
        """Config fields that follow from the `audio:` section, never from an override."""
        rates = frame_rates(audio)
        return {"mel": audio.mel, "n_mels": audio.n_mels, "samples_per_frame": rates["audio"],
                "mels_per_frame": rates["mel"]}

    def model_config(self, profile: str, audio: AudioConfig, overrides: Mapping[str, Any] | None = None,
                     where: str | None = None, **data: Any) -> Any:
        """The `profile` preset with `overrides` (params `model.overrides.<name>`) applied, strictly;
        `data` holds fields the training data decides (e.g. `in_channels` of the crops)."""
        return sized(self.config_class, self.presets, profile, overrides, {**self.derived(audio), **data},
                     where or f"model.overrides.{self.name}")

    def check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ConfigError(f"family {self.name!r} makes no {kind} models; it makes {list(self.kinds)}")

    def train_streams(self, kind: str, catalog: Catalog, variant: Any = None) -> tuple[Stream, ...]:
        """The streams a `kind` training step reads (a family reading e.g. another model's synthesis overrides this)."""
        self.check_kind(kind)
        return catalog.get(*self.reads[kind])

    def input_streams(self, card: ModelCard, catalog: Catalog) -> tuple[Stream, ...]:
        """The streams the model of `card` reads at inference."""
        return catalog.get(*card.inputs)

    def initial_state(self, kind: str, variant: Any, layout: Layout) -> Init | None:
        """Weights a `kind` model of `variant` starts from, or None (from scratch)."""
        return None

    def trained_model_config(self, kind: str, variant: Any, layout: Layout) -> Any:
        """Sizes a `kind` model takes from a model it extends (an AV2A: its base V2A's card), or None
        when they come from `model.profile` and its overrides."""
        return None

    @abstractmethod
    def build(self, kind: str, cfg: Any) -> nn.Module:
        """A freshly initialised `kind` model of sizes `cfg`."""

    @abstractmethod
    def task(self, kind: str, ctx: Context, train: TrainConfig, cfg: Any, loss: Any, variant: Any = None,
             init: Init | None = None) -> Task:
        """The training task of a `kind` model: its objective (train step), validation and export."""

    @abstractmethod
    def load(self, card: ModelCard, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """The exported model of `card` with weights `state`, ready for inference (eval mode)."""

    @abstractmethod
    def speak(self, model: nn.Module, card: ModelCard, batch: Mapping[str, torch.Tensor],
              vocoder: Vocoder | None) -> list[np.ndarray]:
        """Waveforms (float32, frames x samples per frame each) for a batch of equal-length utterances.

        `batch` holds the model's input streams as training batches do (video: B, T, C, H, W uint8).
        """

    def speak_with_predictions(self, model: nn.Module, card: ModelCard, batch: Mapping[str, torch.Tensor],
                               vocoder: Vocoder | None) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
        """`speak`'s waveforms and, per utterance, what the model predicted on the way to them, by the key of
        the stream it predicts (`units`, `f0`, ...; evaluation compares them with those streams); none by default."""
        wavs = self.speak(model, card, batch, vocoder)
        return wavs, [{} for _ in wavs]
