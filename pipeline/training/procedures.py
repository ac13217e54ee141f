"""AV2A training procedures (Kefalas et al., arXiv 2307.16584): which modalities each step sees, and which audio.

- `baseline`: audio + video at every step;
- `modality_dropout`: each step is audio only, video only or audio + video, drawn with `probabilities`;
- `modality_dropout_gt`: as `modality_dropout`, but the audio-only steps read ground-truth audio
  instead of the base V2A's synthesis (the other steps, and every validation and test, read the synthesis).

The draw of step s depends on (seed, s) alone, not on a random stream carried across steps, so a
run resumed from a checkpoint draws exactly what the uninterrupted run draws.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import Tensor

from pipeline.models.av2a import MODALITIES, Fusion, Modality

Procedure = Literal["baseline", "modality_dropout", "modality_dropout_gt"]
DROPOUT: tuple[Procedure, ...] = ("modality_dropout", "modality_dropout_gt")


@dataclass(frozen=True)
class ModalityWeights:
    """Relative weights (normalised to probabilities) of each step's modality combination."""

    audio_video: float
    video: float
    audio: float

    def __post_init__(self) -> None:
        values = [getattr(self, m) for m in MODALITIES]
        if any(v < 0 or not math.isfinite(v) for v in values) or sum(values) <= 0:
            raise ValueError(f"modality weights {values} must be non-negative, finite and not all zero")


@dataclass(frozen=True)
class AV2AVariant:
    """An `av2a.variants` entry: the base V2A (a `v2a.variants` key), the procedure and its settings."""

    family: str  # the base's family (repeated so dvc.yaml can name its params; checked against the base)
    base: str
    procedure: Procedure
    probabilities: ModalityWeights | None  # a dropout procedure's setting; null for baseline
    fusion: Fusion

    def __post_init__(self) -> None:
        p = self.probabilities
        if self.procedure not in DROPOUT:
            if p is not None:
                raise ValueError(f"procedure {self.procedure!r} draws nothing: set probabilities to null")
            return
        if p is None:
            raise ValueError(f"procedure {self.procedure!r} needs probabilities for {list(MODALITIES)}")


def draw_modality(variant: AV2AVariant, seed: int, step: int) -> Modality:
    """The modality combination of training step `step` (a function of seed and step only)."""
    if variant.probabilities is None:
        return "audio_video"
    weights = np.array([getattr(variant.probabilities, m) for m in MODALITIES], dtype=np.float64)
    rng = np.random.default_rng([seed, step])
    return MODALITIES[int(rng.choice(len(MODALITIES), p=weights / weights.sum()))]


def audio_for_step(variant: AV2AVariant, modality: Modality, batch: Mapping[str, Tensor]) -> Tensor:
    """The audio input of a training step: the base's synthesis, or ground truth in `modality_dropout_gt`'s audio-only steps."""
    if variant.procedure == "modality_dropout_gt" and modality == "audio":
        return batch["audio"]
    return batch["synth"]
