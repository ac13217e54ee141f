"""Training losses: their zeros are where they should be and they grow with the error."""
from __future__ import annotations

import pytest
import torch

from pipeline.audio.mel import LogMel
from pipeline.models.losses import (
    MultiResolutionSTFTLoss,
    feature_matching_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    mel_l1_loss,
)


def _outs(logit_value: float, feats: list[torch.Tensor], scales: int = 3) -> list:
    return [(torch.full((2, 1, 10), logit_value), feats) for _ in range(scales)]


@pytest.fixture
def wav() -> torch.Tensor:
    t = torch.arange(6400) / 16000
    return (0.3 * torch.sin(2 * torch.pi * 200 * t) * torch.hann_window(6400)).unsqueeze(0)


def test_lsgan_losses_vanish_at_the_ideal_outputs():
    feats = [torch.zeros(2, 4, 10)]
    assert lsgan_d_loss(_outs(1.0, feats), _outs(0.0, feats)).item() == 0
    assert lsgan_g_loss(_outs(1.0, feats)).item() == 0
    # the discriminator confused (0.5 everywhere): 0.25 + 0.25 per scale
    assert lsgan_d_loss(_outs(0.5, feats), _outs(0.5, feats)).item() == pytest.approx(3 * 0.5)
    assert lsgan_g_loss(_outs(0.0, feats)).item() == pytest.approx(3.0)


def test_feature_matching_is_l1_and_leaves_real_features_alone():
    real_feats = [torch.ones(2, 4, 10, requires_grad=True), torch.zeros(2, 8, 5, requires_grad=True)]
    fake_feats = [torch.zeros(2, 4, 10, requires_grad=True), torch.zeros(2, 8, 5, requires_grad=True)]
    assert feature_matching_loss(_outs(0, real_feats), _outs(0, real_feats)).item() == 0
    loss = feature_matching_loss(_outs(0, real_feats), _outs(0, fake_feats))
    assert loss.item() == pytest.approx(3 * (1.0 + 0.0) / 2)  # mean over layers, summed over scales
    loss.backward()
    assert real_feats[0].grad is None and fake_feats[0].grad is not None


def test_stft_loss_zero_for_identical_and_grows_with_noise(wav):
    loss = MultiResolutionSTFTLoss()
    assert loss(wav, wav).item() == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn(wav.shape, generator=torch.Generator().manual_seed(0))
    small, large = loss(wav + 0.01 * noise, wav).item(), loss(wav + 0.1 * noise, wav).item()
    assert 0 < small < large


def test_stft_loss_weights_are_arguments(wav):
    noisy = wav + 0.05 * torch.randn(wav.shape, generator=torch.Generator().manual_seed(0))
    sc_only = MultiResolutionSTFTLoss(mag_weight=0.0)(noisy, wav)
    mag_only = MultiResolutionSTFTLoss(sc_weight=0.0)(noisy, wav)
    both = MultiResolutionSTFTLoss()(noisy, wav)
    assert sc_only > 0 and mag_only > 0 and both.item() == pytest.approx((sc_only + mag_only).item(), rel=1e-5)


def test_mel_l1_loss(wav):
    logmel = LogMel()
    assert mel_l1_loss(wav, wav, logmel).item() == 0
    wav_hat = (0.5 * wav).requires_grad_()
    loss = mel_l1_loss(wav_hat, wav, logmel)
    loss.backward()
    assert loss.item() > 0 and wav_hat.grad.abs().sum() > 0
