"""AV2A: a trained V2A with its family's A2A audio encoder appended (Kefalas et al., arXiv 2307.16584).

Video features and per-frame audio features (the base V2A's synthesised audio, or ground truth
in the audio-only steps of `modality_dropout_gt`) are fused into one vector per video frame,
which then goes, with the speaker conditioning, through the base V2A's temporal module and
decoder. The decoder keeps one set of batch-norm statistics per modality combination; the
forward pass selects the set of the combination it is given, so no caller can mix them.

An absent modality is a zero feature vector (not an encoded zero waveform): "with the audio
input zeroed" then means exactly "video only", and the fusion below starts as the identity on
the video features, so a fresh AV2A in the video-only (or audio+video with zero audio
features) combination computes exactly its base V2A.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from pipeline.models.config import SpeechConfig
from pipeline.models.norm import copy_norm_stats, set_norm_stats
from pipeline.models.v2a import V2A

Modality = Literal["audio_video", "video", "audio"]
MODALITIES: tuple[Modality, ...] = get_args(Modality)
Fusion = Literal["concat", "sum"]
# The base V2A's statistics sets are "audio" (the A2A's, i.e. audio-encoder features) and
# "video"; AV2A adds the audio+video set, so the audio-only set starts from the A2A audio statistics.
AV_SET = "audio_video"


def av2a_config(base: SpeechConfig) -> SpeechConfig:
    """The base V2A's sizes with a statistics set for every modality combination."""
    sets = tuple(base.norm_sets) + tuple(m for m in MODALITIES if m not in base.norm_sets)
    return dataclasses.replace(base, norm_sets=sets)


class FeatureFusion(nn.Module):
    """Video features (B, T, Dv) and audio features (B, T, Da) -> fused features (B, T, Dv).

    `concat`: Linear([v; a]) with the video block initialised to the identity and the audio block
    to zero. `sum`: v + Linear(a) with the linear layer zero-initialised. Both start as the identity
    on the video features whatever the audio (the AV2A starts as its base V2A, as ControlNet's zero
    convolutions do), and both keep the output width, so the base's temporal module is reused unchanged.
    Gradients still reach the zero block from the first step (dL/dW = g a^T), the audio encoder from
    the second.
    """

    def __init__(self, video_dim: int, audio_dim: int, mode: Fusion):
        super().__init__()
        if mode not in get_args(Fusion):
            raise ValueError(f"fusion {mode!r}: expected one of {get_args(Fusion)}")
        self.mode = mode
        if mode == "concat":
            self.proj = nn.Linear(video_dim + audio_dim, video_dim, bias=True)
            with torch.no_grad():
                self.proj.weight.zero_()
                self.proj.weight[:, :video_dim].copy_(torch.eye(video_dim))
                self.proj.bias.zero_()
        else:
            self.proj = nn.Linear(audio_dim, video_dim, bias=True)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, video: Tensor, audio: Tensor) -> Tensor:
        if self.mode == "concat":
            return self.proj(torch.cat([video, audio], dim=-1))
        return video + self.proj(audio)


class AV2A(nn.Module):
    """Mouth crops (B, T, C, H, W) in [0, 1] + waveform (B, 640T) + speaker -> the base family's output."""

    def __init__(self, v2a: V2A, audio_encoder: nn.Module, fusion: Fusion):
        super().__init__()
        missing = [m for m in MODALITIES if m not in v2a.cfg.norm_sets]
        if missing:
            raise ValueError(f"the V2A decoder needs statistics sets {missing}; build it with av2a_config(cfg)")
        self.cfg = v2a.cfg
        self.v2a = v2a
        self.audio_encoder = audio_encoder
        self.fusion = FeatureFusion(v2a.encoder.out_dim, audio_encoder.out_dim, fusion)

    def forward(self, video: Tensor | None, audio: Tensor | None, spk: Tensor, modality: Modality = "audio_video") -> Tensor:
        """`video` may be None in the audio-only combination and `audio` in the video-only one."""
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r}: expected one of {MODALITIES}")
        set_norm_stats(self.v2a.decoder, modality)
        if video is not None and audio is not None and audio.shape[-1] != video.shape[1] * self.cfg.samples_per_frame:
            raise ValueError(f"audio of {audio.shape[-1]} samples is not {video.shape[1]} video frames x "
                             f"{self.cfg.samples_per_frame}")
        v = self.v2a.encoder(video) if modality != "audio" else None
        a = self.audio_encoder(audio) if modality != "video" else None
        # an absent modality contributes zero features (and its encoder does not run, nor its statistics move)
        if v is None:
            v = a.new_zeros(*a.shape[:2], self.v2a.encoder.out_dim)
        if a is None:
            a = v.new_zeros(*v.shape[:2], self.audio_encoder.out_dim)
        return self.v2a.synthesize(self.fusion(v, a), spk)


def load_base(av2a: AV2A, v2a_state: Mapping[str, Tensor], base_norm_set: str,
              a2a_state: Mapping[str, Tensor] | None) -> None:
    """Start `av2a` from its base V2A's weights (and the A2A audio encoder, when given).

    The base's active statistics set (`base_norm_set`, its card's `norm_stats`) initialises the
    video-only and audio+video sets, so both compute the base V2A exactly at the start; the
    audio-only set keeps the base's "audio" set, the A2A's audio-encoder statistics, when the base
    has trained ones (a decoder from scratch has never normalised audio features: it starts from
    the base's set too).
    """
    base_sets = {k.split(".stats.")[1].split(".")[0] for k in v2a_state if ".stats." in k}
    missing, unexpected = av2a.v2a.load_state_dict(dict(v2a_state), strict=False)
    bad = [k for k in missing if not any(f".stats.{s}." in k for s in set(MODALITIES) - base_sets)]
    if unexpected or bad:
        raise ValueError(f"base V2A weights do not fit the AV2A: missing {bad[:3]}, unexpected {list(unexpected)[:3]}")
    if base_norm_set not in base_sets:
        raise ValueError(f"base statistics set {base_norm_set!r} is not among the base's sets {sorted(base_sets)}")
    # a base whose decoder never saw audio features (trained from scratch) holds an untouched audio set
    audio_seen = any(int(v) > 0 for k, v in v2a_state.items() if k.endswith(".stats.audio.num_batches_tracked"))
    for name in MODALITIES:
        keep = name == "audio" and name in base_sets and audio_seen
        if name != base_norm_set and not keep:
            copy_norm_stats(av2a.v2a.decoder, base_norm_set, name)
    if a2a_state is not None:
        prefix = "encoder."
        enc = {k[len(prefix):]: v for k, v in a2a_state.items() if k.startswith(prefix)}
        if not enc:
            raise ValueError("A2A state dict has no 'encoder.' entries")
        av2a.audio_encoder.load_state_dict(enc)
