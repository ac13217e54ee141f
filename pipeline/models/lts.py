"""Unit-based lip-to-speech (Kim, Kim & Chung, "Let There Be Sound", arXiv 2308.15256).

Mouth crops -> the V2A front-end (3-D conv stem + ResNet) with the speaker projection -> a
conformer over video frames -> the variance decoder:
- repeated to the unit rate (2 per video frame), a linguistic predictor gives k-means unit logits;
  the embedding of the units (ground truth in training, the argmax at inference) is added back;
- repeated to the mel rate (4 per frame), a pitch predictor (normalised log-F0 and a voicing
  logit) and an energy predictor (normalised L2 norm of the mel frame); projections of pitch and
  energy (again ground truth in training, predictions at inference) are added back;
then a conformer mel decoder (with the speaker projection) gives the coarse log-mel, and a flow
post-net (pipeline.models.flow) turns it into the fine one. The post-net sees the coarse mel
detached (PortaSpeech's post-net does the same): its likelihood refines the output without
pulling the coarse decoder, which is why it has an optimiser of its own.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.models.config import VideoModelConfig
from pipeline.models.conformer import ConformerStack
from pipeline.models.decoders import MelDecoder
from pipeline.models.flow import FlowPostNet
from pipeline.models.identity import SpeakerProjection
from pipeline.models.video_encoder import VideoEncoder

NORM_SETS = ("video",)  # one statistics set: LTS models never see audio features


@dataclass(frozen=True)
class LTSConfig(VideoModelConfig):
    """Sizes of an LTS model, what the training data decides (units, normalisation statistics) and which parts
    the variant has. Defaults: the paper's front-end (3-D conv + ResNet-18, VideoModelConfig); where the
    paper is silent, the unofficial LTBS's sizes (papers/README.md) or ours, as said beside each."""

    units_per_frame: int = 2  # from `audio:` (50 Hz units)
    # from the training data: the unit source and clusters (paper: HuBERT-Large layer 12, 200 clusters),
    # the train split's ln(F0) (voiced frames) and energy statistics
    units_source: str = "hubert"
    n_units: int = 200
    log_f0_mean: float = 0.0
    log_f0_std: float = 1.0
    energy_mean: float = 0.0
    energy_std: float = 1.0
    # from the variant
    prosody: bool = True
    postnet: bool = True
    # conformers over video frames and over mel frames (LTBS: 8 layers x 512, 8 heads, FFN 2048; mel decoder 2 layers)
    dim: int = 512
    heads: int = 8
    ff: int = 2048
    kernel: int = 31  # ours: Gulati et al.'s conformer kernel (no source gives LTBS's)
    dropout: float = 0.1  # ours: the conformer's usual rate
    video_layers: int = 8
    decoder_layers: int = 2
    # variance predictors (LTBS: 4 / 2 / 2 conv layers of 256 filters, kernel 3, dropout 0.5; unit embedding 128)
    predictor_filters: int = 256
    predictor_kernel: int = 3
    predictor_dropout: float = 0.5
    unit_predictor_layers: int = 4
    pitch_predictor_layers: int = 2
    energy_predictor_layers: int = 2
    unit_embed_dim: int = 128
    # flow post-net (LTBS: 12 blocks, hidden 192; ours: Glow-TTS's 4-layer coupling nets, kernel 5, no dilation)
    flow_blocks: int = 12
    flow_hidden: int = 192
    flow_layers: int = 4
    flow_kernel: int = 5
    flow_dilation: int = 1

    def _validate(self) -> None:
        super()._validate()
        if self.mels_per_frame % self.units_per_frame:
            raise ValueError(f"{self.units_per_frame} units per frame do not tile {self.mels_per_frame} mels per frame")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if min(self.log_f0_std, self.energy_std) <= 0:
            raise ValueError("normalisation standard deviations must be positive")


class VariancePredictor(nn.Module):
    """FastSpeech 2's predictor: (conv, ReLU, layer norm, dropout) x layers, then a linear head; (B, L, D) -> (B, L, out)."""

    def __init__(self, in_dim: int, filters: int, kernel: int, layers: int, dropout: float, out: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(in_dim if i == 0 else filters, filters, kernel, padding=kernel // 2)
                                   for i in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(filters) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(filters, out)

    def forward(self, x: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.drop(norm(torch.relu(conv(x.transpose(1, 2))).transpose(1, 2)))
        return self.head(x)


@dataclass
class Variance:
    """Per-frame variance quantities, normalised as the model predicts them: units (B, 2T) int, and at the
    mel rate (B, 4T) ln(F0) standardised (0 where unvoiced), voicing in {0, 1}, energy standardised."""

    units: Tensor
    log_f0: Tensor | None = None
    voiced: Tensor | None = None
    energy: Tensor | None = None


@dataclass
class LTSOutput:
    """Predictor outputs and the coarse log-mel (B, n_mels, 4T)."""

    unit_logits: Tensor  # (B, 2T, n_units)
    log_f0: Tensor | None  # (B, 4T) standardised ln(F0)
    voiced_logit: Tensor | None  # (B, 4T)
    energy: Tensor | None  # (B, 4T) standardised
    mel: Tensor
    used: Variance  # what was embedded: the targets in training, the predictions at inference


def normalise(cfg: LTSConfig, f0: Tensor, voiced: Tensor, energy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Prosody streams (F0 in Hz, 0 unvoiced) -> standardised ln(F0) (0 unvoiced), voicing as float, standardised energy."""
    v = voiced.float() * (f0 > 0).float()
    log_f0 = (torch.log(f0.clamp(min=1.0)) - cfg.log_f0_mean) / cfg.log_f0_std * v
    return log_f0, v, (energy - cfg.energy_mean) / cfg.energy_std


def denormalise(cfg: LTSConfig, log_f0: Tensor, voiced: Tensor, energy: Tensor) -> tuple[Tensor, Tensor]:
    """F0 in Hz (0 where unvoiced) and energy, from the model's standardised values."""
    f0 = torch.exp(log_f0 * cfg.log_f0_std + cfg.log_f0_mean) * voiced
    return f0, energy * cfg.energy_std + cfg.energy_mean


class LTS(nn.Module):
    """Mouth crops (B, T, C, H, W) in [0, 1] + speaker (B, E) -> predictor outputs and the coarse log-mel."""

    def __init__(self, cfg: LTSConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VideoEncoder(cfg.in_channels, cfg.video_stem_channels, cfg.video_widths, cfg.video_blocks)
        self.identity = SpeakerProjection(cfg.speaker_dim, cfg.speaker_proj_dim)
        self.video = ConformerStack(self.encoder.out_dim + cfg.speaker_proj_dim, cfg.dim, cfg.video_layers,
                                    cfg.heads, cfg.ff, cfg.kernel, cfg.dropout, NORM_SETS)
        predictor = (cfg.predictor_filters, cfg.predictor_kernel)
        self.unit_predictor = VariancePredictor(cfg.dim, *predictor, cfg.unit_predictor_layers, cfg.predictor_dropout,
                                                cfg.n_units)
        self.unit_embedding = nn.Sequential(nn.Embedding(cfg.n_units, cfg.unit_embed_dim),
                                            nn.Linear(cfg.unit_embed_dim, cfg.dim))
        if cfg.prosody:
            self.pitch_predictor = VariancePredictor(cfg.dim, *predictor, cfg.pitch_predictor_layers,
                                                     cfg.predictor_dropout, 2)
            self.energy_predictor = VariancePredictor(cfg.dim, *predictor, cfg.energy_predictor_layers,
                                                      cfg.predictor_dropout, 1)
            self.pitch_embedding = nn.Linear(2, cfg.dim)  # (ln F0, voicing) of each mel frame
            self.energy_embedding = nn.Linear(1, cfg.dim)
        self.decoder = MelDecoder(cfg.dim + cfg.speaker_proj_dim, cfg.n_mels, cfg.dim, cfg.decoder_layers, cfg.heads,
                                  cfg.ff, cfg.kernel, cfg.dropout, NORM_SETS)

    def forward(self, video: Tensor, spk: Tensor, targets: Variance | None = None) -> LTSOutput:
        """Teacher-forced with `targets` (training); from its own predictions without."""
        cfg = self.cfg
        feats = self.encoder(video)
        h = self.video(torch.cat([feats, self.identity(spk, feats.shape[1])], dim=-1))
        h = h.repeat_interleave(cfg.units_per_frame, dim=1)
        unit_logits = self.unit_predictor(h)
        units = targets.units if targets is not None else unit_logits.argmax(-1)
        h = (h + self.unit_embedding(units)).repeat_interleave(cfg.mels_per_frame // cfg.units_per_frame, dim=1)
        used = Variance(units)
        log_f0 = voiced_logit = energy = None
        if cfg.prosody:
            log_f0, voiced_logit = self.pitch_predictor(h).unbind(-1)
            energy = self.energy_predictor(h).squeeze(-1)
            if targets is not None:
                used = targets
            else:
                voiced = (voiced_logit > 0).float()
                used = Variance(units, log_f0 * voiced, voiced, energy)
            h = (h + self.pitch_embedding(torch.stack([used.log_f0, used.voiced], dim=-1))
                 + self.energy_embedding(used.energy.unsqueeze(-1)))
        mel = self.decoder(torch.cat([h, self.identity(spk, h.shape[1])], dim=-1))
        return LTSOutput(unit_logits, log_f0, voiced_logit, energy, mel, used)


class LTSModel(nn.Module):
    """An exported LTS model: the coarse model and, unless the variant drops it, the flow post-net."""

    def __init__(self, cfg: LTSConfig):
        super().__init__()
        self.cfg = cfg
        self.coarse = LTS(cfg)
        # built last: the coarse model starts from the same random draws with or without a post-net
        self.postnet = (FlowPostNet(cfg.n_mels, cfg.n_mels + cfg.speaker_dim, cfg.flow_blocks, cfg.flow_hidden,
                                    cfg.flow_layers, cfg.flow_kernel, cfg.flow_dilation) if cfg.postnet else None)

    def refine(self, coarse: Tensor, spk: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """The output log-mel: a post-net sample around the coarse mel, or the coarse mel without a post-net."""
        if self.postnet is None:
            return coarse
        return self.postnet.sample(coarse.detach(), postnet_condition(coarse, spk), temperature, generator)


def postnet_condition(coarse: Tensor, spk: Tensor) -> Tensor:
    """The post-net's conditioning: the coarse mel (detached) and the speaker embedding at every frame."""
    return torch.cat([coarse.detach(), spk.unsqueeze(-1).expand(-1, -1, coarse.shape[-1])], dim=1)


def targets_of(cfg: LTSConfig, batch: Mapping[str, Tensor]) -> Variance:
    """The ground-truth variance quantities of a training batch (units, f0, voiced, energy streams)."""
    units = batch["units"].long()
    if not cfg.prosody:
        return Variance(units)
    return Variance(units, *normalise(cfg, batch["f0"].float(), batch["voiced"], batch["energy"].float()))
