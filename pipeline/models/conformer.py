"""Conformer blocks (Gulati et al., 2020) whose convolution module uses a multi-stat batch norm, and a stack of them."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pipeline.models.norm import MultiStatBatchNorm


def sinusoid_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Sinusoidal position encodings (length, dim) of Vaswani et al."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim, device=device)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return enc


class FeedForward(nn.Module):
    """Pre-norm position-wise feed-forward with swish."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, batch norm, swish, pointwise conv over (B, L, D)."""

    def __init__(self, dim: int, kernel: int, dropout: float, norm_sets: Sequence[str], affine_per_set: bool):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.pw1 = nn.Conv1d(dim, 2 * dim, 1)
        self.glu = nn.GLU(dim=1)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.bn = MultiStatBatchNorm(dim, norm_sets, affine_per_set)
        self.act = nn.SiLU()
        self.pw2 = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.glu(self.pw1(self.ln(x).transpose(1, 2)))
        y = self.pw2(self.act(self.bn(self.dw(y))))
        return self.drop(y.transpose(1, 2))


class ConformerBlock(nn.Module):
    """Half feed-forward, self-attention, convolution, half feed-forward, each residual; final layer norm."""

    def __init__(self, dim: int, heads: int, ff: int, kernel: int, dropout: float,
                 norm_sets: Sequence[str], affine_per_set: bool):
        super().__init__()
        self.ff1 = FeedForward(dim, ff, dropout)
        self.attn_ln = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attn_drop = nn.Dropout(dropout)
        self.conv = ConvModule(dim, kernel, dropout, norm_sets, affine_per_set)
        self.ff2 = FeedForward(dim, ff, dropout)
        self.out_ln = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        y = self.attn_ln(x)
        x = x + self.attn_drop(self.attn(y, y, y, need_weights=False)[0])
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.out_ln(x)


class ConformerStack(nn.Module):
    """Features (B, L, in_dim) -> (B, L, dim): a projection, absolute sinusoidal positions, conformer blocks."""

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, ff: int, kernel: int, dropout: float,
                 norm_sets: Sequence[str], affine_per_set: bool = False):
        super().__init__()
        self.inp = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, heads, ff, kernel, dropout, norm_sets, affine_per_set) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        x = self.inp(x)
        # attention is order-blind; absolute positions complement what the convolutions see
        x = x + sinusoid_positions(x.shape[1], x.shape[2], x.device)
        for block in self.blocks:
            x = block(x)
        return x
