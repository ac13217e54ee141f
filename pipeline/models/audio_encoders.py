"""Audio encoders of the A2A autoencoders: speech -> one feature vector per video frame.

They stand in for the video encoder during audio-only pre-training, so their output has the
video encoder's frame rate: the waveform encoder's strides multiply to the samples per video
frame (640), the mel encoder's to the mel frames per video frame (4).
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from pipeline.audio.mel import LogMel, MelConfig


def _strided_block(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    # padding kernel//2 with an odd kernel maps a length divisible by `stride` to length/stride exactly
    return nn.Sequential(
        nn.Conv1d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm1d(out_ch),
        nn.LeakyReLU(0.2),
    )


class WaveEncoder(nn.Module):
    """Raw waveform (B, S) -> features (B, S / prod(strides), D) from strided 1-D convolutions."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int]):
        super().__init__()
        layers, in_ch = [], 1
        for ch, stride in zip(channels, strides, strict=True):
            # a kernel of 2*stride+1 overlaps each window with half of both neighbours
            layers.append(_strided_block(in_ch, ch, 2 * stride + 1, stride))
            in_ch = ch
        self.net = nn.Sequential(*layers)
        self.out_dim = in_ch

    def forward(self, wav: Tensor) -> Tensor:
        return self.net(wav.unsqueeze(1)).transpose(1, 2)


class MelEncoder(nn.Module):
    """Raw waveform (B, S) -> log-mel -> features (B, frames / prod(strides), D)."""

    def __init__(self, mel: MelConfig, channels: Sequence[int], strides: Sequence[int]):
        super().__init__()
        self.logmel = LogMel(mel)
        layers, in_ch = [], mel.n_mels
        for ch, stride in zip(channels, strides, strict=True):
            layers.append(_strided_block(in_ch, ch, 5, stride))
            in_ch = ch
        self.net = nn.Sequential(*layers)
        self.out_dim = in_ch

    def forward(self, wav: Tensor) -> Tensor:
        return self.net(self.logmel(wav)).transpose(1, 2)
