"""Speaker identity: a learned projection of the (GE2E, 256-d) speaker embedding."""
from __future__ import annotations

from torch import Tensor, nn


class SpeakerProjection(nn.Module):
    """Speaker embedding (B, E) -> the same projected vector at every frame (B, T, D)."""

    def __init__(self, speaker_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(speaker_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, spk: Tensor, frames: int) -> Tensor:
        return self.proj(spk).unsqueeze(1).expand(-1, frames, -1)
