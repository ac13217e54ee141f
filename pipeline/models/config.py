"""Model sizes in one place: a dataclass per model kind with a `demo` and a `paper` preset.

`demo` sizes train on a 2-core CPU in minutes; `paper` sizes follow Kefalas et al.
(arXiv 2306.15464) and the works they build on: a 3-D conv stem plus ResNet-18 video encoder
(Stafylakis & Tzimiropoulos), a MelGAN-style waveform decoder with a multi-scale discriminator
(V2A-WaveGAN), a conformer mel decoder (SVTS-S: 6 blocks, width 256, 4 heads) and a HiFi-GAN V1
vocoder. Widths the papers do not state (speaker projection, audio encoder channels) are ours.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pipeline.audio.mel import MelConfig

FAMILIES = ("wavegan", "melspec")
PROFILES = ("demo", "paper")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of an A2A/V2A model of one family; defaults are the paper's WaveGAN sizes."""

    family: str = "wavegan"
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
    # audio encoder: strides multiply to samples_per_frame (wavegan) or mels_per_frame (melspec)
    audio_channels: tuple[int, ...] = (64, 128, 256, 512)
    audio_strides: tuple[int, ...] = (2, 5, 8, 8)
    # temporal module: bidirectional recurrent layers (before and after upsampling for melspec)
    temporal_hidden: int = 256
    temporal_layers: int = 2
    # waveform decoder (wavegan): channels halve at each upsampling stage
    decoder_channels: int = 512
    decoder_ratios: tuple[int, ...] = (8, 8, 5, 2)
    decoder_dilations: tuple[int, ...] = (1, 3, 9)
    # conformer mel decoder (melspec)
    conformer_dim: int = 256
    conformer_layers: int = 6
    conformer_heads: int = 4
    conformer_ff: int = 1024
    conformer_kernel: int = 31
    conformer_dropout: float = 0.1
    # multi-scale discriminator (wavegan)
    msd_scales: int = 3
    msd_channels: int = 16
    msd_max_channels: int = 1024
    msd_layers: int = 4
    # decoder batch-norm statistics sets (one per input source) and whether affine is per set
    norm_sets: tuple[str, ...] = ("audio", "video")
    norm_affine_per_set: bool = False

    def __post_init__(self) -> None:
        # YAML and JSON hand back lists and dicts; store tuples and a MelConfig so configs hash and compare.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if isinstance(self.mel, dict):
            object.__setattr__(self, "mel", MelConfig(**self.mel))
        self._validate()

    def _validate(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not one of {FAMILIES}")
        if self.mel.n_mels != self.n_mels:
            raise ValueError(f"n_mels {self.n_mels} differs from mel.n_mels {self.mel.n_mels}")
        if self.mel.hop_length * self.mels_per_frame != self.samples_per_frame:
            raise ValueError(
                f"mel hop {self.mel.hop_length} x {self.mels_per_frame} mels per frame != "
                f"{self.samples_per_frame} samples per frame")
        if len(self.video_widths) != len(self.video_blocks):
            raise ValueError("video_widths and video_blocks need one entry per ResNet stage")
        if len(self.audio_channels) != len(self.audio_strides):
            raise ValueError("audio_channels and audio_strides need one entry per encoder layer")
        want = self.samples_per_frame if self.family == "wavegan" else self.mels_per_frame
        if math.prod(self.audio_strides) != want:
            raise ValueError(f"audio_strides {self.audio_strides} must multiply to {want} for {self.family}")
        if self.family == "wavegan" and math.prod(self.decoder_ratios) != self.samples_per_frame:
            raise ValueError(f"decoder_ratios {self.decoder_ratios} must multiply to {self.samples_per_frame}")
        if self.decoder_channels % 2 ** len(self.decoder_ratios):
            raise ValueError("decoder_channels must halve evenly at every upsampling stage")
        if self.conformer_dim % self.conformer_heads:
            raise ValueError("conformer_dim must be divisible by conformer_heads")
        if not self.norm_sets or len(set(self.norm_sets)) != len(self.norm_sets):
            raise ValueError(f"norm_sets {self.norm_sets} must be distinct names")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what `config.json` stores); `ModelConfig(**d)` restores it."""
        return asdict(self)


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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; `HiFiGANConfig(**d)` restores it."""
        return asdict(self)


_MODEL_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("wavegan", "paper"): {},
    ("melspec", "paper"): {
        "audio_channels": (256, 512, 512), "audio_strides": (1, 2, 2),
    },
    ("wavegan", "demo"): {
        "speaker_proj_dim": 32,
        "video_stem_channels": 16, "video_widths": (16, 32, 64, 64), "video_blocks": (1, 1, 1, 1),
        "audio_channels": (16, 32, 64, 64),
        "temporal_hidden": 64, "temporal_layers": 1,
        "decoder_channels": 128,
        "msd_channels": 8, "msd_max_channels": 128, "msd_layers": 3,
    },
    ("melspec", "demo"): {
        "speaker_proj_dim": 32,
        "video_stem_channels": 16, "video_widths": (16, 32, 64, 64), "video_blocks": (1, 1, 1, 1),
        "audio_channels": (64, 64, 64), "audio_strides": (1, 2, 2),
        "temporal_hidden": 64, "temporal_layers": 1,
        "conformer_dim": 64, "conformer_layers": 2, "conformer_heads": 2, "conformer_ff": 128,
        "conformer_kernel": 15,
    },
}

_HIFIGAN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "demo": {
        "upsample_initial_channel": 64,
        "resblock_kernel_sizes": (3, 7), "resblock_dilations": ((1, 3, 5), (1, 3, 5)),
        "mpd_channels": (8, 16, 32, 64, 64),
        "msd_channels": 8, "msd_max_channels": 128, "msd_layers": 3,
    },
}


def _apply(base: Any, overrides: dict[str, Any] | None) -> Any:
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {f.name for f in fields(base)})
    if unknown:
        raise ValueError(f"unknown {type(base).__name__} keys {unknown}")
    return replace(base, **overrides)


def model_config(family: str, profile: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The `profile` preset of `family`, with `overrides` (e.g. a params.yaml section) applied."""
    if (family, profile) not in _MODEL_PRESETS:
        raise ValueError(f"no preset for family {family!r}, profile {profile!r}; "
                         f"families {FAMILIES}, profiles {PROFILES}")
    base = ModelConfig(family=family, profile=profile, **_MODEL_PRESETS[(family, profile)])
    return _apply(base, overrides)


def hifigan_config(profile: str, overrides: dict[str, Any] | None = None) -> HiFiGANConfig:
    """The `profile` preset of the HiFi-GAN vocoder with `overrides` applied."""
    if profile not in _HIFIGAN_PRESETS:
        raise ValueError(f"no HiFi-GAN preset {profile!r}; profiles {PROFILES}")
    return _apply(HiFiGANConfig(profile=profile, **_HIFIGAN_PRESETS[profile]), overrides)
