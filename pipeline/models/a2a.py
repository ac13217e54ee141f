"""A2A: the audio-to-audio autoencoder whose decoder is pre-trained on audio alone."""
from __future__ import annotations

from torch import Tensor

from pipeline.models.synth import FrameSynth


class A2A(FrameSynth):
    """Waveform (B, S = 640T) -> the family's audio encoder -> temporal module -> decoder."""

    def forward(self, wav: Tensor, spk: Tensor) -> Tensor:
        if wav.shape[-1] % self.cfg.samples_per_frame:
            raise ValueError(f"waveform length {wav.shape[-1]} is not a multiple of "
                             f"{self.cfg.samples_per_frame} samples per video frame")
        return self.synthesize(self.encoder(wav), spk)
