"""V2A: video-to-audio synthesis with a decoder initialised from a pre-trained A2A model.

`load_decoder` copies the A2A decoder's weights and its audio running statistics, then
initialises every other statistics set (the video set) from the audio set. Reason: the A2A
never sees video, so its video set is still the untrained mean 0 / variance 1; starting from
the audio statistics makes the freshly loaded V2A decoder compute exactly the pre-trained
A2A decoder's function, and in training the video set then moves towards the video
features' own statistics. (The paper text could not be consulted offline on this detail;
this follows its description of separate statistics per input source.)
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from pipeline.models.config import SpeechConfig
from pipeline.models.norm import copy_norm_stats
from pipeline.models.synth import FrameSynth, PartFactory
from pipeline.models.video_encoder import VideoEncoder


class V2A(FrameSynth):
    """Mouth crops (B, T, C, H, W) in [0, 1] -> video encoder -> the family's temporal module -> decoder."""

    def __init__(self, cfg: SpeechConfig, temporal: PartFactory, decoder: PartFactory):
        super().__init__(cfg, VideoEncoder(cfg.in_channels, cfg.video_stem_channels, cfg.video_widths, cfg.video_blocks),
                         temporal, decoder)

    def forward(self, video: Tensor, spk: Tensor) -> Tensor:
        return self.synthesize(self.encoder(video), spk)


def load_decoder(v2a: V2A, a2a_state_dict: Mapping[str, Tensor], init_from: str | None = "audio") -> None:
    """Copy the A2A decoder (weights and running statistics) into `v2a.decoder`.

    With `init_from` set, every other statistics set then starts from that set; with None the
    sets are copied as stored (e.g. from a decoder already trained on both sources).
    """
    prefix = "decoder."
    decoder_state = {k[len(prefix):]: v for k, v in a2a_state_dict.items() if k.startswith(prefix)}
    if not decoder_state:
        raise ValueError("state dict has no 'decoder.' entries; pass an A2A model's state_dict()")
    v2a.decoder.load_state_dict(decoder_state)
    if init_from is not None:
        for name in v2a.cfg.norm_sets:
            if name != init_from:
                copy_norm_stats(v2a.decoder, init_from, name)
