"""Parts of the A2A/V2A models and the vocoder: configs, shapes, multi-statistics norms."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_world import AUDIO, MEL, loss, model_cfg, train_cfg, vocoder_loss

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.mel import log_mel
from pipeline.config import ConfigError, parse, to_plain
from pipeline.families import get_family
from pipeline.models.audio_encoders import MelEncoder, WaveEncoder
from pipeline.models.config import HiFiGANConfig, hifigan_config
from pipeline.models.decoders import MelDecoder, WaveDecoder
from pipeline.models.discriminator import MultiPeriodDiscriminator, MultiScaleDiscriminator
from pipeline.models.hifigan import HiFiGAN
from pipeline.models.identity import SpeakerProjection
from pipeline.models.norm import MultiStatBatchNorm, freeze, set_norm_stats, unfreeze
from pipeline.models.temporal import RecurrentStack, UpsamplingLSTM
from pipeline.models.video_encoder import VideoEncoder
from pipeline.training.task import Context
from pipeline.training.vocoder import VocoderTask

T = 10  # video frames: 0.4 s


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def test_presets_overrides_and_json_round_trip():
    cfg = model_cfg("wavegan", "demo", {"temporal_hidden": 32, "decoder_ratios": [8, 8, 10]})
    assert cfg.temporal_hidden == 32 and cfg.decoder_ratios == (8, 8, 10) and cfg.profile == "demo"
    wavegan = get_family("wavegan").config_class
    assert parse(wavegan, json.loads(json.dumps(to_plain(cfg)))) == cfg
    melspec = model_cfg("melspec", "paper")
    assert melspec.mel == MEL and melspec.conformer_layers == 6 and melspec.audio_strides == (1, 2, 2)
    assert melspec.samples_per_frame == AUDIO.sample_rate // AUDIO.fps and melspec.mels_per_frame == 4
    vocoder = hifigan_config("demo", MEL)
    assert parse(HiFiGANConfig, json.loads(json.dumps(to_plain(vocoder)))) == vocoder


@pytest.mark.parametrize("family, profile, overrides, match", [
    ("wavegan", "demo", {"no_such_key": 1}, r"unknown key model\.overrides\.wavegan\.no_such_key"),
    ("wavegan", "demo", {"decoder_ratio": (8, 8, 10)}, "did you mean 'decoder_ratios'"),
    ("wavegan", "demo", {"decoder_ratios": (8, 8, 8)}, "decoder_ratios"),
    ("melspec", "demo", {"audio_strides": (2, 2, 2)}, "audio_strides"),
    ("melspec", "demo", {"mels_per_frame": 5}, "mels_per_frame: follows from"),
    ("melspec", "demo", {"temporal_hidden": "wide"}, "temporal_hidden: expected an integer"),
    ("wavegan", "huge", None, "no WaveGANConfig preset 'huge'"),
])
def test_config_rejects_unknown_and_inconsistent_sizes(family, profile, overrides, match):
    with pytest.raises(ConfigError, match=match):
        model_cfg(family, profile, overrides)


def test_hifigan_config_rejects_rates_not_matching_hop():
    with pytest.raises(ConfigError, match="hop"):
        hifigan_config("demo", MEL, {"upsample_rates": (5, 4, 4, 4), "upsample_kernel_sizes": (11, 8, 8, 8)})
    with pytest.raises(ConfigError, match="hop_length: follows from"):
        hifigan_config("demo", MEL, {"hop_length": 320})


@pytest.mark.parametrize("channels, size", [(1, 96), (3, 88), (1, 64)])
def test_video_encoder_gives_one_vector_per_frame(channels, size):
    enc = VideoEncoder(channels, 8, (8, 16, 16, 32), (1, 1, 1, 1))
    out = enc(torch.rand(2, T, channels, size, size))
    assert out.shape == (2, T, 32) and enc.out_dim == 32
    # the 5-frame stem mixes neighbours only: changing the last frame leaves the first frames alone
    video = torch.rand(1, T, channels, size, size)
    enc.eval()
    changed = video.clone()
    changed[:, -1] = 0
    a, b = enc(video), enc(changed)
    assert torch.allclose(a[:, :T - 3], b[:, :T - 3]) and not torch.allclose(a[:, -1], b[:, -1])


def test_audio_encoders_reach_video_frame_rate():
    wav = torch.randn(2, T * 640) * 0.1
    assert WaveEncoder((8, 16, 16, 32), (2, 5, 8, 8))(wav).shape == (2, T, 32)
    assert MelEncoder(MEL, (16, 16, 24), (1, 2, 2))(wav).shape == (2, T, 24)


def test_speaker_projection_is_constant_over_time():
    out = SpeakerProjection(256, 16)(torch.randn(3, 256), T)
    assert out.shape == (3, T, 16) and torch.equal(out[:, 0], out[:, -1])


def test_temporal_modules_shapes():
    x = torch.randn(2, T, 20)
    assert RecurrentStack(20, 12, 2)(x).shape == (2, T, 24)
    up = UpsamplingLSTM(20, 12, 1, 4)
    assert up(x).shape == (2, 4 * T, 24) and up.out_dim == 24


def test_decoders_shapes_and_range():
    x = torch.randn(2, T, 24)
    wav = WaveDecoder(24, 64, (8, 8, 5, 2), (1, 3), ("audio", "video"))(x)
    assert wav.shape == (2, T * 640) and wav.abs().max() <= 1
    mel = MelDecoder(24, 80, 32, 2, 2, 64, 7, 0.0, ("audio", "video"))(torch.randn(2, 4 * T, 24))
    assert mel.shape == (2, 80, 4 * T)


def _stats(norm: MultiStatBatchNorm, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    s = norm.stats[name]
    return s.running_mean.clone(), s.running_var.clone()


def test_statistics_sets_are_separate():
    norm = MultiStatBatchNorm(4, ("audio", "video"))
    video_before = _stats(norm, "video")
    set_norm_stats(norm, "audio")
    norm.train()
    norm(torch.randn(8, 4, 5) * 3 + 2)
    assert all(torch.equal(a, b) for a, b in zip(_stats(norm, "video"), video_before))
    assert not torch.equal(_stats(norm, "audio")[0], video_before[0])
    norm.eval()
    x = torch.randn(2, 4, 5)
    out_audio = norm(x)
    set_norm_stats(norm, "video")
    assert not torch.allclose(out_audio, norm(x))
    with pytest.raises(KeyError):
        set_norm_stats(norm, "audio_video")


def test_three_named_sets_and_per_set_affine():
    norm = MultiStatBatchNorm(4, ("audio_video", "video", "audio"), affine_per_set=True)
    norm.select("video")
    norm(torch.randn(8, 4, 5)).pow(2).sum().backward()
    assert norm.stats["video"].weight.grad is not None
    assert norm.stats["audio"].weight.grad is None and norm.stats["audio_video"].weight.grad is None
    assert norm.stats["audio"].num_batches_tracked == 0 and norm.stats["video"].num_batches_tracked == 1


def test_freeze_survives_train_mode_and_unfreeze_restores():
    dec = WaveDecoder(8, 16, (8, 8, 10), (1,), ("audio", "video"))
    x = torch.randn(2, 3, 8)
    freeze(dec)
    dec.train()  # a trainer's model.train() must not unfreeze the statistics
    before = {k: v.clone() for k, v in dec.state_dict().items()}
    dec(x)
    assert all(torch.equal(v, dec.state_dict()[k]) for k, v in before.items())
    assert not any(p.requires_grad for p in dec.parameters())
    unfreeze(dec)
    dec(x)
    assert any(not torch.equal(v, dec.state_dict()[k]) for k, v in before.items() if "running_mean" in k)
    assert all(p.requires_grad for p in dec.parameters())


def test_freeze_with_adapting_statistics_updates_only_the_selected_set():
    dec = WaveDecoder(8, 16, (8, 8, 10), (1,), ("audio", "video"))
    freeze(dec, update_stats=True)
    set_norm_stats(dec, "video")
    norm = dec.net[1]
    audio_before, video_before = _stats(norm, "audio"), _stats(norm, "video")
    dec.train()
    dec(torch.randn(2, 3, 8) * 2 + 1)
    assert not any(p.requires_grad for p in dec.parameters())
    assert torch.equal(_stats(norm, "audio")[0], audio_before[0])
    assert not torch.equal(_stats(norm, "video")[0], video_before[0])


def test_multi_scale_discriminator_three_scales_with_features():
    disc = MultiScaleDiscriminator(3, 8, 64, 3)
    outs = disc(torch.randn(2, 6400))
    assert len(outs) == 3
    lengths = [logits.shape[-1] for logits, _ in outs]
    assert lengths[0] > lengths[1] > lengths[2]  # each scale sees a 2x average-pooled signal
    assert all(logits.shape[:2] == (2, 1) and len(feats) == 5 for logits, feats in outs)


def test_multi_period_discriminator_one_output_per_period():
    disc = MultiPeriodDiscriminator((2, 3, 5), (4, 8, 8))
    wav = torch.randn(2, 1601, requires_grad=True)  # not divisible by any period
    outs = disc(wav)
    assert len(outs) == 3 and [logits.shape[-1] for logits, _ in outs] == [2, 3, 5]
    sum(logits.mean() for logits, _ in outs).backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0


def test_each_gan_gets_its_discriminator():
    wavegan_task = get_family("wavegan").task("v2a", Context(), train_cfg(), model_cfg("wavegan"), loss("wavegan"),
                                              get_family("wavegan").variant_class("wavegan", "scratch", True))
    assert len(wavegan_task.net("d")(torch.randn(1, 3200))) == 3  # MelGAN's multi-scale discriminator
    vocoder_cfg = hifigan_config("demo", MEL)
    vocoder = VocoderTask(Context(), train_cfg(), vocoder_cfg, MEL, vocoder_loss())
    assert len(vocoder.net("d")(torch.randn(1, 3200))) == len(vocoder_cfg.mpd_periods) + 3  # HiFi-GAN: MPD + MSD
    melspec_task = get_family("melspec").task("v2a", Context(), train_cfg(), model_cfg("melspec"), loss("melspec"),
                                              get_family("melspec").variant_class("melspec", "scratch", True))
    assert set(melspec_task.nets) == {"g"}  # trains without a discriminator


@pytest.mark.parametrize("frames", [40, 37])
def test_hifigan_output_length(frames):
    vocoder = HiFiGAN(hifigan_config("demo", MEL))
    wav = vocoder(torch.randn(2, 80, frames))
    assert wav.shape == (2, frames * 160) and wav.abs().max() <= 1


def test_griffin_lim_inverts_log_mel():
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.5 * t)) * np.hanning(16000)).astype(np.float32)
    mel = log_mel(audio)
    wav = griffin_lim(mel, MEL, n_iter=32)
    assert wav.shape == (mel.shape[1] * 160,) and wav.dtype == np.float32
    corr = np.corrcoef(mel.ravel(), log_mel(wav).ravel())[0, 1]
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert corr > 0.95 and np.corrcoef(mel.ravel(), log_mel(noise).ravel())[0, 1] < 0.5
