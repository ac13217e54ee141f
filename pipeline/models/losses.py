"""Training losses. Each returns an unweighted scalar; the trainer weights and sums them.

Discriminator outputs are lists of (logits, features) pairs, one per sub-discriminator, as
returned by `pipeline.models.discriminator`. Adversarial and feature-matching terms are
summed over sub-discriminators (as HiFi-GAN does) and averaged within each.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.audio.mel import LogMel

DiscOutput = Sequence[tuple[Tensor, Sequence[Tensor]]]


def lsgan_d_loss(real_outs: DiscOutput, fake_outs: DiscOutput) -> Tensor:
    """Least-squares discriminator loss: real logits pulled to 1, generated ones to 0."""
    return sum(((1 - real) ** 2).mean() + (fake ** 2).mean()
               for (real, _), (fake, _) in zip(real_outs, fake_outs, strict=True))


def lsgan_g_loss(fake_outs: DiscOutput) -> Tensor:
    """Least-squares generator loss: generated logits pushed to 1."""
    return sum(((1 - fake) ** 2).mean() for fake, _ in fake_outs)


def feature_matching_loss(real_outs: DiscOutput, fake_outs: DiscOutput) -> Tensor:
    """L1 between discriminator features of real and generated audio, mean over layers."""
    total = 0.0
    for (_, real_feats), (_, fake_feats) in zip(real_outs, fake_outs, strict=True):
        layers = [F.l1_loss(f, r.detach()) for r, f in zip(real_feats, fake_feats, strict=True)]
        total = total + sum(layers) / len(layers)
    return total


def mel_l1_loss(wav_hat: Tensor, wav: Tensor, logmel: LogMel) -> Tensor:
    """L1 distance between the log-mel spectrograms of generated and real waveforms."""
    return F.l1_loss(logmel(wav_hat), logmel(wav))


class STFTLoss(nn.Module):
    """Spectral convergence and log-magnitude L1 at one STFT resolution."""

    def __init__(self, fft_size: int, hop_size: int, win_length: int):
        super().__init__()
        self.fft_size, self.hop_size, self.win_length = fft_size, hop_size, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def magnitude(self, wav: Tensor) -> Tensor:
        spec = torch.stft(wav, self.fft_size, self.hop_size, self.win_length, self.window, return_complex=True)
        # floor before sqrt: its gradient is infinite at zero
        return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-7))

    def forward(self, wav_hat: Tensor, wav: Tensor) -> tuple[Tensor, Tensor]:
        mag_hat, mag = self.magnitude(wav_hat), self.magnitude(wav)
        sc = torch.linalg.norm(mag - mag_hat) / torch.linalg.norm(mag)
        log_mag = F.l1_loss(torch.log(mag_hat), torch.log(mag))
        return sc, log_mag


class MultiResolutionSTFTLoss(nn.Module):
    """Parallel WaveGAN's multi-resolution STFT loss: weighted spectral convergence + log magnitude."""

    def __init__(self, fft_sizes: Sequence[int] = (1024, 2048, 512), hop_sizes: Sequence[int] = (120, 240, 50),
                 win_lengths: Sequence[int] = (600, 1200, 240), sc_weight: float = 1.0, mag_weight: float = 1.0):
        super().__init__()
        self.losses = nn.ModuleList(
            STFTLoss(n, h, w) for n, h, w in zip(fft_sizes, hop_sizes, win_lengths, strict=True))
        self.sc_weight, self.mag_weight = sc_weight, mag_weight

    def forward(self, wav_hat: Tensor, wav: Tensor) -> Tensor:
        total = 0.0
        for loss in self.losses:
            sc, log_mag = loss(wav_hat, wav)
            total = total + self.sc_weight * sc + self.mag_weight * log_mag
        return total / len(self.losses)
