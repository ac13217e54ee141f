"""Lip-reading front-end: a 3-D conv stem (5x7x7) and a ResNet trunk applied to every frame.

The shape of Stafylakis & Tzimiropoulos (2017) and Martinez et al. (2020): the stem mixes five
neighbouring frames, then a 2-D ResNet (ResNet-18 at paper size) maps each frame to one
vector. Any crop size works (global average pooling), gray or RGB.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity or 1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetTrunk(nn.Module):
    """ResNet stages (strides 1, 2, 2, ...) then global average pooling: (N, C, H, W) -> (N, D)."""

    def __init__(self, in_ch: int, widths: Sequence[int], blocks: Sequence[int]):
        super().__init__()
        stages = []
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(in_ch if j == 0 else width, width, stride if j == 0 else 1) for j in range(n)]
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.stages(x)).flatten(1)


class VideoEncoder(nn.Module):
    """Mouth crops (B, T, C, H, W) in [0, 1] -> one feature vector per frame (B, T, D)."""

    def __init__(self, in_channels: int, stem_channels: int, widths: Sequence[int], blocks: Sequence[int]):
        super().__init__()
        self.stem = nn.Sequential(
            # temporal padding 2 keeps T frames in, T frames out
            nn.Conv3d(in_channels, stem_channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.trunk = ResNetTrunk(stem_channels, widths, blocks)
        self.out_dim = self.trunk.out_dim

    def forward(self, video: Tensor) -> Tensor:
        if not video.is_floating_point():
            raise TypeError(f"video must be float in [0, 1], got {video.dtype} (divide uint8 crops by 255)")
        b, t = video.shape[:2]
        # centre pixels on zero; the stem's batch norm learns the remaining scale
        x = self.stem((video * 2.0 - 1.0).transpose(1, 2))  # (B, C', T, H', W')
        x = x.transpose(1, 2).flatten(0, 1)  # frames become the batch of the 2-D trunk
        return self.trunk(x).view(b, t, -1)
