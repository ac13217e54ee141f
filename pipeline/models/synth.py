"""The part A2A and V2A share: frame features + speaker identity -> temporal module -> decoder."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pipeline.models.config import SpeechConfig
from pipeline.models.identity import SpeakerProjection

#: Builds a module reading features of the given width; a family supplies its temporal module and decoder.
PartFactory = Callable[[int], nn.Module]


class FrameSynth(nn.Module):
    """Encoder features (B, T, D) and speaker embedding (B, E) -> the family decoder's output
    (waveform (B, 640T), log-mel (B, 80, 4T), ...)."""

    def __init__(self, cfg: SpeechConfig, encoder: nn.Module, temporal: PartFactory, decoder: PartFactory):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.identity = SpeakerProjection(cfg.speaker_dim, cfg.speaker_proj_dim)
        self.temporal = temporal(encoder.out_dim + cfg.speaker_proj_dim)
        self.decoder = decoder(self.temporal.out_dim)

    def synthesize(self, feats: Tensor, spk: Tensor) -> Tensor:
        """Decode frame-rate encoder features conditioned on the speaker."""
        x = torch.cat([feats, self.identity(spk, feats.shape[1])], dim=-1)
        return self.decoder(self.temporal(x))
