"""The part A2A and V2A share: frame features + speaker identity -> temporal module -> decoder."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.models.config import ModelConfig
from pipeline.models.decoders import build_decoder
from pipeline.models.identity import SpeakerProjection
from pipeline.models.temporal import build_temporal


class FrameSynth(nn.Module):
    """Encoder features (B, T, D) and speaker embedding (B, E) -> waveform (B, 640T) or log-mel (B, 80, 4T)."""

    def __init__(self, cfg: ModelConfig, encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.identity = SpeakerProjection(cfg.speaker_dim, cfg.speaker_proj_dim)
        self.temporal = build_temporal(cfg, encoder.out_dim + cfg.speaker_proj_dim)
        self.decoder = build_decoder(cfg, self.temporal.out_dim)

    def synthesize(self, feats: Tensor, spk: Tensor) -> Tensor:
        """Decode frame-rate encoder features conditioned on the speaker."""
        x = torch.cat([feats, self.identity(spk, feats.shape[1])], dim=-1)
        return self.decoder(self.temporal(x))
