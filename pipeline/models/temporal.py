"""Temporal modules between the frame-rate encoders and the decoders."""
from __future__ import annotations

from torch import Tensor, nn


class RecurrentStack(nn.Module):
    """Bidirectional GRU layers over frame features: (B, T, D) -> (B, T, 2H)."""

    def __init__(self, in_dim: int, hidden: int, layers: int):
        super().__init__()
        self.rnn = nn.GRU(in_dim, hidden, layers, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]


class UpsamplingLSTM(nn.Module):
    """LSTM, repeat every frame `factor` times (as AutoVC does), LSTM: (B, T, D) -> (B, factor*T, 2H)."""

    def __init__(self, in_dim: int, hidden: int, layers: int, factor: int):
        super().__init__()
        self.pre = nn.LSTM(in_dim, hidden, layers, batch_first=True, bidirectional=True)
        self.post = nn.LSTM(2 * hidden, hidden, layers, batch_first=True, bidirectional=True)
        self.factor = factor
        self.out_dim = 2 * hidden

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)[0].repeat_interleave(self.factor, dim=1)
        return self.post(x)[0]
