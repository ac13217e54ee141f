"""Model sizes: the parts shared by the A2A/V2A families, the HiFi-GAN vocoder, presets per profile.

`demo` sizes train on a 2-core CPU in minutes; `paper` sizes follow Kefalas et al.
(arXiv 2306.15464) and the works they build on: a 3-D conv stem plus ResNet-18 video encoder
(Stafylakis & Tzimiropoulos), a MelGAN-style waveform decoder with a multi-scale discriminator
(V2A-WaveGAN), a conformer mel decoder (SVTS-S: 6 blocks, width 256, 4 heads) and a HiFi-GAN V1
vocoder. Widths the papers do not state (speaker projection, audio encoder channels) are ours.
Each family's own config class and presets live with the family (pipeline.families).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from pipeline.audio.mel import MelConfig
from pipeline.config import ConfigError, parse

T = TypeVar("T")


@dataclass(frozen=True)
class VideoModelConfig:
    """Sizes every video-input model shares: rates (from `audio:`), identity and the video front-end
    (paper sizes: a 5x7x7 3-D conv stem and ResNet-18)."""

    profile: str = "paper"
    speaker_dim: int = 256
    in_channels: int = 1
    samples_per_frame: int = 640
    mels_per_frame: int = 4
    n_mels: int = 80
    mel: MelConfig = field(default_factory=MelConfig)
    speaker_proj_dim: int = 128
    # video encoder: 3-D conv stem (5x7x7) then a per-frame ResNet trunk
    video_stem_channels: int = 64
    video_widths: tuple[int, ...] = (64, 128, 256, 512)
    video_blocks: tuple[int, ...] = (2, 2, 2, 2)

    def __post_init__(self) -> None:
        # JSON hands back lists and dicts; store tuples and a MelConfig so configs hash and compare.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if isinstance(self.mel, dict):
            object.__setattr__(self, "mel", MelConfig(**self.mel))
        self._validate()

    def _validate(self) -> None:
        if self.mel.n_mels != self.n_mels:
            raise ValueError(f"n_mels {self.n_mels} differs from mel.n_mels {self.mel.n_mels}")
        if self.mel.hop_length * self.mels_per_frame != self.samples_per_frame:
            raise ValueError(
                f"mel hop {self.mel.hop_length} x {self.mels_per_frame} mels per frame != "
                f"{self.samples_per_frame} samples per frame")
        if len(self.video_widths) != len(self.video_blocks):
            raise ValueError("video_widths and video_blocks need one entry per ResNet stage")


# The demo profile's identity and video front-end, shared by every family's `demo` preset.
DEMO_FRONT_END: dict[str, Any] = {"speaker_proj_dim": 32, "video_stem_channels": 16, "video_widths": (16, 32, 64, 64),
                                  "video_blocks": (1, 1, 1, 1)}


@dataclass(frozen=True)
class SpeechConfig(VideoModelConfig):
    """Sizes shared by the A2A/V2A families: identity, video and audio encoders, temporal module,
    decoder statistics sets. Each family's config (pipeline.families) adds its decoder's sizes;
    defaults are the paper's sizes, and the rates (`mel`, `samples_per_frame`, ...) come from `audio:`."""

    # audio encoder: strides multiply to `encoder_steps_per_frame` (the family says of what)
    audio_channels: tuple[int, ...] = (64, 128, 256, 512)
    audio_strides: tuple[int, ...] = (2, 5, 8, 8)
    # temporal module: bidirectional recurrent layers
    temporal_hidden: int = 256
    temporal_layers: int = 2
    # decoder batch-norm statistics sets (one per input source) and whether affine is per set
    norm_sets: tuple[str, ...] = ("audio", "video")
    norm_affine_per_set: bool = False

    @property
    def encoder_steps_per_frame(self) -> int:
        """What the audio encoder's strides must multiply to: its input steps per video frame."""
        raise NotImplementedError

    def _validate(self) -> None:
        super()._validate()
        if len(self.audio_channels) != len(self.audio_strides):
            raise ValueError("audio_channels and audio_strides need one entry per encoder layer")
        if math.prod(self.audio_strides) != self.encoder_steps_per_frame:
            raise ValueError(f"audio_strides {self.audio_strides} must multiply to {self.encoder_steps_per_frame}")
        if not self.norm_sets or len(set(self.norm_sets)) != len(self.norm_sets):
            raise ValueError(f"norm_sets {self.norm_sets} must be distinct names")


@dataclass(frozen=True)
class HiFiGANConfig:
    """HiFi-GAN generator and discriminator sizes; upsampling multiplies to the mel hop."""

    profile: str = "paper"
    n_mels: int = 80
    hop_length: int = 160
    upsample_initial_channel: int = 512
    # hop 160 = 5*4*4*2; kernels are 2x the rate (+1 for odd rates) so each stage is exact
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2)
    upsample_kernel_sizes: tuple[int, ...] = (11, 8, 8, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    msd_scales: int = 3
    msd_channels: int = 16
    msd_max_channels: int = 1024
    msd_layers: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(tuple(v) if isinstance(v, list) else v for v in value))
        if math.prod(self.upsample_rates) != self.hop_length:
            raise ValueError(f"upsample_rates {self.upsample_rates} must multiply to hop {self.hop_length}")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if kernel < rate or (kernel - rate) % 2:
                raise ValueError(f"kernel {kernel} cannot upsample exactly by {rate}")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilations):
            raise ValueError("one dilation tuple per resblock kernel size")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("upsample_initial_channel must halve evenly at every stage")


HIFIGAN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "demo": {
        "upsample_initial_channel": 64,
        "resblock_kernel_sizes": (3, 7), "resblock_dilations": ((1, 3, 5), (1, 3, 5)),
        "mpd_channels": (8, 16, 32, 64, 64),
        "msd_channels": 8, "msd_max_channels": 128, "msd_layers": 3,
    },
}


def sized(cls: type[T], presets: Mapping[str, Mapping[str, Any]], profile: str, overrides: Mapping[str, Any] | None,
          derived: Mapping[str, Any], where: str) -> T:
    """`cls` at preset `profile` with `overrides` (a `model.overrides.<model>` section) applied, strictly.

    `derived` holds the fields that follow from other sections (rates and mel settings from
    `audio:`, crop channels from the data): an override may not set them.
    """
    if profile not in presets:
        raise ConfigError(f"model.profile: no {cls.__name__} preset {profile!r}; profiles {sorted(presets)}")
    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) & {*derived, "profile"})
    if fixed:
        raise ConfigError(f"{where}.{fixed[0]}: follows from model.profile and the audio settings, not an override")
    return parse(cls, {**presets[profile], **overrides, **derived, "profile": profile}, where)


def hifigan_config(profile: str, mel: MelConfig, overrides: Mapping[str, Any] | None = None,
                   where: str = "model.overrides.hifigan") -> HiFiGANConfig:
    """The `profile` preset of the HiFi-GAN vocoder for `mel`, with `overrides` applied."""
    return sized(HiFiGANConfig, HIFIGAN_PRESETS, profile, overrides,
                 {"n_mels": mel.n_mels, "hop_length": mel.hop_length}, where)
