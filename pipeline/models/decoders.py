"""Speech decoders shared by A2A and V2A; their batch norms keep statistics per input source.

- `WaveDecoder` (WaveGAN family): MelGAN-style generator. Transposed convolutions upsample
  frame-rate features by prod(ratios) = 640 to a 16 kHz waveform; each stage is followed by
  residual stacks of dilated convolutions (dilations 1, 3, 9). MelGAN uses weight norm only;
  batch norm is here because the paper's decoders separate the statistics of audio- and
  video-derived features in their batch-norm layers. Convolutions pad by replicating the
  edge (MelGAN reflects) so that clips of a single video frame decode too.
- `MelDecoder` (MelSpec family): conformer blocks on mel-rate features to an 80-bin log-mel.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from pipeline.models.conformer import ConformerStack
from pipeline.models.norm import MultiStatBatchNorm


class ResidualUnit(nn.Module):
    """x + Norm(Conv1x1(act(Norm(DilatedConv3(act(x))))))."""

    def __init__(self, ch: int, dilation: int, norm_sets: Sequence[str], affine_per_set: bool):
        super().__init__()
        self.net = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv1d(ch, ch, 3, dilation=dilation, padding=dilation, padding_mode="replicate"),
            MultiStatBatchNorm(ch, norm_sets, affine_per_set),
            nn.LeakyReLU(0.2),
            nn.Conv1d(ch, ch, 1),
            MultiStatBatchNorm(ch, norm_sets, affine_per_set),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def _upsample(in_ch: int, out_ch: int, ratio: int) -> nn.ConvTranspose1d:
    # MelGAN's kernel 2r; padding and output_padding make the output exactly r times longer for odd r too
    return nn.ConvTranspose1d(in_ch, out_ch, 2 * ratio, ratio, ratio // 2 + ratio % 2, output_padding=ratio % 2)


class WaveDecoder(nn.Module):
    """Frame features (B, T, D) -> waveform (B, T * prod(ratios)) in [-1, 1]."""

    def __init__(self, in_dim: int, channels: int, ratios: Sequence[int], dilations: Sequence[int],
                 norm_sets: Sequence[str], affine_per_set: bool = False):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv1d(in_dim, channels, 7, padding=3, padding_mode="replicate"),
            MultiStatBatchNorm(channels, norm_sets, affine_per_set),
        ]
        ch = channels
        for ratio in ratios:
            layers += [nn.LeakyReLU(0.2), _upsample(ch, ch // 2, ratio),
                       MultiStatBatchNorm(ch // 2, norm_sets, affine_per_set)]
            ch //= 2
            layers += [ResidualUnit(ch, d, norm_sets, affine_per_set) for d in dilations]
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(ch, 1, 7, padding=3, padding_mode="replicate"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.transpose(1, 2)).squeeze(1)


class MelDecoder(ConformerStack):
    """Mel-rate features (B, F, D) -> log-mel (B, n_mels, F) through conformer blocks."""

    def __init__(self, in_dim: int, n_mels: int, dim: int, layers: int, heads: int, ff: int, kernel: int,
                 dropout: float, norm_sets: Sequence[str], affine_per_set: bool = False):
        super().__init__(in_dim, dim, layers, heads, ff, kernel, dropout, norm_sets, affine_per_set)
        self.out = nn.Linear(dim, n_mels)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(super().forward(x)).transpose(1, 2)
