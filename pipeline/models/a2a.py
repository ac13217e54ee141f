"""A2A: the audio-to-audio autoencoder whose decoder is pre-trained on audio alone."""
from __future__ import annotations

from torch import Tensor

from pipeline.models.audio_encoders import build_audio_encoder
from pipeline.models.config import ModelConfig
from pipeline.models.synth import FrameSynth


class A2A(FrameSynth):
    """Waveform (B, S = 640T) -> audio encoder -> temporal module -> decoder: waveform or log-mel."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, build_audio_encoder(cfg))

    def forward(self, wav: Tensor, spk: Tensor) -> Tensor:
        if wav.shape[-1] % self.cfg.samples_per_frame:
            raise ValueError(f"waveform length {wav.shape[-1]} is not a multiple of "
                             f"{self.cfg.samples_per_frame} samples per video frame")
        return self.synthesize(self.encoder(wav), spk)


def build_a2a(cfg: ModelConfig) -> A2A:
    """An A2A model of `cfg.family` at `cfg`'s sizes."""
    return A2A(cfg)
