"""Assembled A2A/V2A models: shapes, learning one batch, decoder transfer and freezing, paper sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_world import MEL, model_cfg
from scipy.signal import lfilter

from pipeline.audio.mel import LogMel
from pipeline.families import get_family
from pipeline.models.a2a import A2A
from pipeline.models.losses import mel_l1_loss
from pipeline.models.norm import MultiStatBatchNorm, freeze, set_norm_stats
from pipeline.models.v2a import load_decoder

T = 10  # video frames: 0.4 s


def build(kind: str, family: str, profile: str = "demo", **overrides) -> torch.nn.Module:
    """A `kind` model of `family` at `profile`'s sizes, built by the family."""
    return get_family(family).build(kind, model_cfg(family, profile, overrides))


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def speech_like(frames: int, seed: int, sr: int = 16000) -> np.ndarray:
    """A vowel-like signal: a gliding glottal pulse train through three formant resonators."""
    rng = np.random.default_rng(seed)
    n = frames * 640
    t = np.arange(n) / sr
    f0 = 110 + 40 * np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, 6))
    pulses = (np.diff(np.floor(np.cumsum(f0 / sr)), prepend=0) > 0).astype(float)
    x = pulses + 0.02 * rng.standard_normal(n)
    for freq, bandwidth in [(rng.uniform(400, 800), 80), (rng.uniform(1200, 1800), 120), (2500, 200)]:
        r, theta = np.exp(-np.pi * bandwidth / sr), 2 * np.pi * freq / sr
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    x *= np.hanning(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    wav = torch.from_numpy(np.stack([speech_like(T, seed) for seed in range(2)]))
    spk = F.normalize(torch.randn(2, 256, generator=torch.Generator().manual_seed(0)), dim=-1)
    return wav, spk


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
@pytest.mark.parametrize("channels, size", [(1, 96), (3, 88)])
def test_assembled_models_agree_on_output_shape(family, channels, size, batch):
    wav, spk = batch
    expected = (2, T * 640) if family == "wavegan" else (2, 80, 4 * T)
    assert build("a2a", family, in_channels=channels)(wav, spk).shape == expected
    assert build("v2a", family, in_channels=channels)(torch.rand(2, T, channels, size, size), spk).shape == expected


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
def test_single_frame_clip_decodes(family, batch):
    v2a = build("v2a", family).eval()
    out = v2a(torch.rand(1, 1, 1, 88, 88), batch[1][:1])
    assert out.shape == ((1, 640) if family == "wavegan" else (1, 80, 4))


def test_a2a_rejects_partial_video_frame(batch):
    with pytest.raises(ValueError, match="multiple of 640"):
        build("a2a", "wavegan")(batch[0][:, :1000], batch[1])


def _fit(model: torch.nn.Module, inputs: tuple, loss_fn, steps: int, lr: float = 2e-3) -> tuple[float, float]:
    opt = torch.optim.Adam(model.parameters(), lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(*inputs))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], float(np.mean(losses[-5:]))


def test_wavegan_a2a_overfits_one_batch(batch):
    # measured at demo size: log-mel L1 4.5 -> 0.47 (9.6x) in 100 steps
    wav, spk = batch
    logmel = LogMel(MEL)
    first, last = _fit(build("a2a", "wavegan"), (wav, spk),
                       lambda out: mel_l1_loss(out, wav, logmel), steps=100)
    assert last < first / 4


def test_melspec_a2a_overfits_one_batch(batch):
    # measured at demo size: log-mel L1 6.1 -> 0.2 (30x) in 150 steps
    wav, spk = batch
    target = LogMel(MEL)(wav)
    first, last = _fit(build("a2a", "melspec"), (wav, spk),
                       lambda out: F.l1_loss(out, target), steps=150)
    assert last < first / 10


def test_melspec_v2a_overfits_one_batch(batch):
    # measured at demo size, 48x48 crops: log-mel L1 6.0 -> 0.29 (20x) in 100 steps
    wav, spk = batch
    target = LogMel(MEL)(wav)
    video = torch.rand(2, T, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    first, last = _fit(build("v2a", "melspec"), (video, spk),
                       lambda out: F.l1_loss(out, target), steps=100)
    assert last < first / 5


def _trained_a2a(family: str, batch) -> A2A:
    a2a = build("a2a", family)
    set_norm_stats(a2a, "audio")
    opt = torch.optim.Adam(a2a.parameters(), 1e-3)
    for _ in range(3):
        out = a2a(*batch)
        loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return a2a


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
def test_load_decoder_copies_weights_and_starts_video_stats_from_audio(family, batch):
    a2a = _trained_a2a(family, batch)
    state = a2a.state_dict()
    v2a = build("v2a", family)
    load_decoder(v2a, state)
    for name, value in v2a.decoder.state_dict().items():
        source = name.replace("stats.video.", "stats.audio.")
        assert torch.equal(value, state[f"decoder.{source}"]), name
    # the loaded decoder computes the A2A decoder's function on the video set
    a2a.eval()
    v2a.eval()
    set_norm_stats(a2a, "audio")
    set_norm_stats(v2a, "video")
    features = torch.randn(2, T if family == "wavegan" else 4 * T, a2a.temporal.out_dim)
    assert torch.allclose(a2a.decoder(features), v2a.decoder(features), atol=1e-5)
    # without initialisation the untouched video set of the A2A comes across as stored
    load_decoder(v2a, state, init_from=None)
    norm = next(m for m in v2a.decoder.modules() if isinstance(m, MultiStatBatchNorm))
    assert torch.equal(norm.stats["video"].running_var, torch.ones_like(norm.stats["video"].running_var))


def test_load_decoder_rejects_state_without_decoder(batch):
    v2a = build("v2a", "wavegan")
    with pytest.raises(ValueError, match="decoder"):
        load_decoder(v2a, v2a.encoder.state_dict())


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
def test_frozen_decoder_stays_while_encoder_learns(family, batch):
    wav, spk = batch
    v2a = build("v2a", family)
    load_decoder(v2a, _trained_a2a(family, batch).state_dict())
    freeze(v2a.decoder)
    set_norm_stats(v2a, "video")
    v2a.train()
    decoder_before = {k: v.clone() for k, v in v2a.decoder.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in v2a.encoder.named_parameters()}
    opt = torch.optim.AdamW(v2a.parameters(), 1e-3)
    target = wav if family == "wavegan" else LogMel(MEL)(wav)
    loss = F.l1_loss(v2a(torch.rand(2, T, 1, 48, 48), spk), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(torch.equal(v, v2a.decoder.state_dict()[k]) for k, v in decoder_before.items())
    changed = [k for k, p in v2a.encoder.named_parameters() if not torch.equal(p, encoder_before[k])]
    assert len(changed) == len(encoder_before)


def test_set_norm_stats_reaches_every_decoder_norm():
    v2a = build("v2a", "melspec")
    norms = [m for m in v2a.modules() if isinstance(m, MultiStatBatchNorm)]
    assert len(norms) == 2 and all(n in set(v2a.decoder.modules()) for n in norms)
    set_norm_stats(v2a, "video")
    assert all(n.active == "video" for n in norms)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("family", ["wavegan", "melspec"])
def test_paper_profile_builds_and_trains_one_step(family):
    v2a, a2a = build("v2a", family, "paper"), build("a2a", family, "paper")
    # ResNet-18 without its classifier is 11.2M parameters; the 5x7x7 stem adds 15.7k
    assert 11.1e6 < _count(v2a.encoder.trunk) < 11.3e6
    assert _count(v2a.encoder.stem) == 64 * 5 * 7 * 7 + 2 * 64
    spk = torch.randn(1, 256)
    frames = 4
    for model, x in [(v2a, torch.rand(1, frames, 1, 88, 88)), (a2a, torch.randn(1, frames * 640) * 0.1)]:
        out = model(x, spk)
        out.pow(2).mean().backward()
        assert out.shape == ((1, frames * 640) if family == "wavegan" else (1, 80, 4 * frames))
        assert all(p.grad is not None for p in model.decoder.parameters())
