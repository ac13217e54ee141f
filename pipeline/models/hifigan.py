"""HiFi-GAN V1-style vocoder (Kong et al., 2020): log-mel (B, 80, F) -> waveform (B, F * 160).

Upsampling rates (5, 4, 4, 2) multiply to our mel hop of 160 samples (HiFi-GAN's own
22.05 kHz setting uses 8, 8, 2, 2 for hop 256); each stage is followed by a multi-receptive-
field fusion of residual blocks with different kernel sizes and dilations.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from pipeline.models.config import HiFiGANConfig

LRELU_SLOPE = 0.1


class ResBlock(nn.Module):
    """HiFi-GAN ResBlock1: per dilation, a dilated conv then a plain conv, each residual."""

    def __init__(self, ch: int, kernel: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(ch, ch, kernel, dilation=d, padding=d * (kernel - 1) // 2)) for d in dilations)
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(ch, ch, kernel, padding=(kernel - 1) // 2)) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGAN(nn.Module):
    """HiFi-GAN generator: mel frames -> `hop_length` waveform samples per frame in [-1, 1]."""

    def __init__(self, cfg: HiFiGANConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(cfg.n_mels, ch, 7, padding=3))
        self.ups = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            self.ups.append(weight_norm(nn.ConvTranspose1d(ch, ch // 2, kernel, rate, (kernel - rate) // 2)))
            ch //= 2
            self.mrfs.append(nn.ModuleList(
                ResBlock(ch, k, d) for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations)))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, padding=3))

    def forward(self, mel: Tensor) -> Tensor:
        x = self.conv_pre(mel)
        for up, mrf in zip(self.ups, self.mrfs):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(block(x) for block in mrf) / len(mrf)
        # HiFi-GAN's final activation uses leaky_relu's default slope 0.01
        return self.conv_post(F.leaky_relu(x)).tanh().squeeze(1)
