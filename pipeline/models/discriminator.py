"""Waveform discriminators. Each returns a list with one (logits, features) pair per sub-discriminator.

- `MultiScaleDiscriminator`: MelGAN's three identical discriminators on the waveform and its
  2x and 4x average-pooled versions (grouped strided convolutions, weight norm).
- `MultiPeriodDiscriminator`: HiFi-GAN's 2-D discriminators on the waveform folded by each
  period, for the vocoder.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

DiscOutput = list[tuple[Tensor, list[Tensor]]]


class ScaleDiscriminator(nn.Module):
    """MelGAN discriminator on one waveform scale: (B, S) -> logits (B, 1, S'), layer features."""

    def __init__(self, channels: int, max_channels: int, layers: int):
        super().__init__()
        convs = [nn.Conv1d(1, channels, 15, padding=7, padding_mode="reflect")]
        ch = channels
        for _ in range(layers):
            out = min(ch * 4, max_channels)
            # grouped convs keep the wide layers cheap, as in MelGAN
            convs.append(nn.Conv1d(ch, out, 41, stride=4, padding=20, groups=max(1, ch // 4)))
            ch = out
        convs.append(nn.Conv1d(ch, min(ch * 2, max_channels), 5, padding=2))
        ch = min(ch * 2, max_channels)
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.post = weight_norm(nn.Conv1d(ch, 1, 3, padding=1))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, feats = wav.unsqueeze(1), []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        return self.post(x), feats


class MultiScaleDiscriminator(nn.Module):
    """`scales` MelGAN discriminators on the waveform average-pooled by 1, 2, 4, ..."""

    def __init__(self, scales: int = 3, channels: int = 16, max_channels: int = 1024, layers: int = 4):
        super().__init__()
        self.discs = nn.ModuleList(ScaleDiscriminator(channels, max_channels, layers) for _ in range(scales))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, wav: Tensor) -> DiscOutput:
        outs = []
        for i, disc in enumerate(self.discs):
            if i:
                wav = self.pool(wav.unsqueeze(1)).squeeze(1)
            outs.append(disc(wav))
        return outs


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN discriminator on the waveform folded to (S / period, period) frames."""

    def __init__(self, period: int, channels: Sequence[int]):
        super().__init__()
        self.period = period
        convs, in_ch = [], 1
        for i, ch in enumerate(channels):
            stride = 1 if i == len(channels) - 1 else 3
            convs.append(weight_norm(nn.Conv2d(in_ch, ch, (5, 1), (stride, 1), padding=(2, 0))))
            in_ch = ch
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(in_ch, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        pad = (-wav.shape[-1]) % self.period
        if pad:
            wav = F.pad(wav.unsqueeze(1), (0, pad), mode="reflect").squeeze(1)
        x = wav.view(wav.shape[0], 1, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        return self.post(x), feats


class MultiPeriodDiscriminator(nn.Module):
    """One period discriminator per period (HiFi-GAN: 2, 3, 5, 7, 11)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 channels: Sequence[int] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.discs = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: Tensor) -> DiscOutput:
        return [disc(wav) for disc in self.discs]


class CombinedDiscriminator(nn.Module):
    """Several discriminators whose output lists are concatenated (HiFi-GAN: MPD + MSD)."""

    def __init__(self, *discs: nn.Module):
        super().__init__()
        self.discs = nn.ModuleList(discs)

    def forward(self, wav: Tensor) -> DiscOutput:
        return [out for disc in self.discs for out in disc(wav)]
