"""The WaveGAN family (V2A-WaveGAN, A2A-WaveGAN): waveform in, waveform out, trained as a GAN.

Audio encoder: strided 1-D convolutions on the raw waveform (strides multiply to the samples
per video frame). Temporal module: bidirectional GRUs. Decoder: MelGAN-style upsampling
convolutions to the waveform. Objective: LS-GAN and feature matching against MelGAN's
multi-scale discriminator, plus reconstruction (log-mel L1 and a multi-resolution STFT loss);
the adversarial terms join after `adversarial_start` steps. Speech: the output itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.families import register
from pipeline.families.speech import Objective, SpeechFamily, SpeechTask
from pipeline.inference.card import ModelCard
from pipeline.inference.vocoder import Vocoder
from pipeline.models.audio_encoders import WaveEncoder
from pipeline.models.config import DEMO_FRONT_END, SpeechConfig
from pipeline.models.decoders import WaveDecoder
from pipeline.models.discriminator import MultiScaleDiscriminator
from pipeline.models.losses import MultiResolutionSTFTLoss
from pipeline.models.temporal import RecurrentStack
from pipeline.training.adversarial import Adversary
from pipeline.training.config import TrainConfig


@dataclass(frozen=True)
class WaveGANConfig(SpeechConfig):
    """Sizes of a WaveGAN-family model; defaults are the paper's."""

    # waveform decoder: channels halve at each upsampling stage; ratios multiply to the samples per frame
    decoder_channels: int = 512
    decoder_ratios: tuple[int, ...] = (8, 8, 5, 2)
    decoder_dilations: tuple[int, ...] = (1, 3, 9)
    # multi-scale discriminator
    msd_scales: int = 3
    msd_channels: int = 16
    msd_max_channels: int = 1024
    msd_layers: int = 4

    @property
    def encoder_steps_per_frame(self) -> int:
        return self.samples_per_frame

    def _validate(self) -> None:
        super()._validate()
        if math.prod(self.decoder_ratios) != self.samples_per_frame:
            raise ValueError(f"decoder_ratios {self.decoder_ratios} must multiply to {self.samples_per_frame}")
        if self.decoder_channels % 2 ** len(self.decoder_ratios):
            raise ValueError("decoder_channels must halve evenly at every upsampling stage")


@dataclass(frozen=True)
class WaveGANLoss:
    """params.yaml `loss.wavegan`: every term's weight."""

    adversarial: float
    feature_matching: float
    mel_l1: float  # L1 between log-mels
    stft: float  # multi-resolution STFT (spectral convergence + log magnitude)
    adversarial_start: int  # steps of reconstruction-only training before the discriminator joins


class WaveGANObjective(Objective):
    def __init__(self, task: SpeechTask, cfg: WaveGANConfig, loss: WaveGANLoss, train: TrainConfig):
        self.task, self.loss = task, loss
        self.adversary = Adversary(task, MultiScaleDiscriminator(cfg.msd_scales, cfg.msd_channels, cfg.msd_max_channels,
                                                                 cfg.msd_layers), train)
        self.stft = MultiResolutionSTFTLoss().to(task.ctx.device)

    def step(self, audio: Tensor, out: Tensor, target: Tensor) -> dict[str, float]:
        task, w = self.task, self.loss
        logs: dict[str, float] = {}
        adversarial = task.ctx.step > w.adversarial_start
        if adversarial:
            logs["d"] = self.adversary.step(audio, out)
        mel = F.l1_loss(task.logmel(out), target)
        stft = self.stft(out, audio)
        total = w.mel_l1 * mel + w.stft * stft
        if adversarial:
            adv, fm = self.adversary.generator_terms(audio, out)
            total = total + w.adversarial * adv + w.feature_matching * fm
            logs.update(adversarial=float(adv.detach()), feature_matching=float(fm.detach()))
        logs.update(g=task.optimize("g", total), mel_l1=float(mel.detach()), stft=float(stft.detach()))
        return logs

    def mel(self, out: Tensor) -> Tensor:
        return self.task.logmel(out)

    def extra_metrics(self, out: Tensor, audio: Tensor) -> dict[str, float]:
        return {"stft": float(self.stft(out, audio))}

    def waveform(self, out: Tensor, mel: Tensor) -> np.ndarray:
        return out.cpu().numpy()


class WaveGAN(SpeechFamily):
    name = "wavegan"
    config_class = WaveGANConfig
    loss_class = WaveGANLoss
    vocoded = False
    presets = {
        "paper": {},
        "demo": {
            **DEMO_FRONT_END,
            "audio_channels": (16, 32, 64, 64),
            "temporal_hidden": 64, "temporal_layers": 1,
            "decoder_channels": 128,
            "msd_channels": 8, "msd_max_channels": 128, "msd_layers": 3,
        },
    }

    def audio_encoder(self, cfg: WaveGANConfig) -> nn.Module:
        return WaveEncoder(cfg.audio_channels, cfg.audio_strides)

    def temporal(self, cfg: WaveGANConfig, in_dim: int) -> nn.Module:
        return RecurrentStack(in_dim, cfg.temporal_hidden, cfg.temporal_layers)

    def decoder(self, cfg: WaveGANConfig, in_dim: int) -> nn.Module:
        return WaveDecoder(in_dim, cfg.decoder_channels, cfg.decoder_ratios, cfg.decoder_dilations,
                           cfg.norm_sets, cfg.norm_affine_per_set)

    def objective(self, task: SpeechTask, cfg: WaveGANConfig, loss: WaveGANLoss, train: TrainConfig) -> Objective:
        return WaveGANObjective(task, cfg, loss, train)

    def waveforms(self, out: np.ndarray, card: ModelCard, vocoder: Vocoder | None) -> list[np.ndarray]:
        return [w.astype(np.float32) for w in out]


register(WaveGAN())
