"""The MelSpec family (V2A-MelSpec, A2A-MelSpec): log-mel out, spoken by the vocoder.

Audio encoder: convolutions on the log-mel (strides multiply to the mel frames per video
frame). Temporal module: LSTMs around a repeat to the mel rate (as AutoVC does). Decoder:
conformer blocks to an 80-bin log-mel. Objective: L1 between log-mels plus spectral
convergence. Speech: the log-mel through the vocoder (HiFi-GAN, or Griffin-Lim).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.mel import AudioConfig
from pipeline.config import parse
from pipeline.families import register
from pipeline.families.speech import Objective, SpeechFamily, SpeechTask
from pipeline.inference.card import ModelCard
from pipeline.inference.vocoder import Vocoder, vocode
from pipeline.models.audio_encoders import MelEncoder
from pipeline.models.config import DEMO_FRONT_END, SpeechConfig
from pipeline.models.decoders import MelDecoder
from pipeline.models.temporal import UpsamplingLSTM
from pipeline.training.config import TrainConfig


@dataclass(frozen=True)
class MelSpecConfig(SpeechConfig):
    """Sizes of a MelSpec-family model; defaults are the paper's (SVTS-S conformer decoder)."""

    audio_channels: tuple[int, ...] = (256, 512, 512)
    audio_strides: tuple[int, ...] = (1, 2, 2)
    # conformer mel decoder
    conformer_dim: int = 256
    conformer_layers: int = 6
    conformer_heads: int = 4
    conformer_ff: int = 1024
    conformer_kernel: int = 31
    conformer_dropout: float = 0.1

    @property
    def encoder_steps_per_frame(self) -> int:
        return self.mels_per_frame

    def _validate(self) -> None:
        super()._validate()
        if self.conformer_dim % self.conformer_heads:
            raise ValueError("conformer_dim must be divisible by conformer_heads")


@dataclass(frozen=True)
class MelSpecLoss:
    """params.yaml `loss.melspec`."""

    mel_l1: float  # L1 between predicted and target log-mels
    spectral_convergence: float


def spectral_convergence(pred_log_mel: Tensor, target_log_mel: Tensor) -> Tensor:
    """||M - M^||_F / ||M||_F on linear-magnitude mels."""
    target = target_log_mel.exp()
    return torch.linalg.norm(target - pred_log_mel.exp()) / torch.linalg.norm(target)


class MelSpecObjective(Objective):
    def __init__(self, task: SpeechTask, cfg: MelSpecConfig, loss: MelSpecLoss):
        self.task, self.cfg, self.loss = task, cfg, loss

    def step(self, audio: Tensor, out: Tensor, target: Tensor) -> dict[str, float]:
        mel = F.l1_loss(out, target)
        sc = spectral_convergence(out, target)
        g = self.task.optimize("g", self.loss.mel_l1 * mel + self.loss.spectral_convergence * sc)
        return {"g": g, "mel_l1": float(mel.detach()), "spectral_convergence": float(sc.detach())}

    def mel(self, out: Tensor) -> Tensor:
        return out

    def waveform(self, out: Tensor, mel: Tensor) -> np.ndarray:
        return griffin_lim(mel.cpu().numpy(), self.cfg.mel)


class MelSpec(SpeechFamily):
    name = "melspec"
    config_class = MelSpecConfig
    loss_class = MelSpecLoss
    vocoded = True
    presets = {
        "paper": {},
        "demo": {
            **DEMO_FRONT_END,
            "audio_channels": (64, 64, 64), "audio_strides": (1, 2, 2),
            "temporal_hidden": 64, "temporal_layers": 1,
            "conformer_dim": 64, "conformer_layers": 2, "conformer_heads": 2, "conformer_ff": 128,
            "conformer_kernel": 15,
        },
    }

    def audio_encoder(self, cfg: MelSpecConfig) -> nn.Module:
        return MelEncoder(cfg.mel, cfg.audio_channels, cfg.audio_strides)

    def temporal(self, cfg: MelSpecConfig, in_dim: int) -> nn.Module:
        return UpsamplingLSTM(in_dim, cfg.temporal_hidden, cfg.temporal_layers, cfg.mels_per_frame)

    def decoder(self, cfg: MelSpecConfig, in_dim: int) -> nn.Module:
        return MelDecoder(in_dim, cfg.n_mels, cfg.conformer_dim, cfg.conformer_layers, cfg.conformer_heads,
                          cfg.conformer_ff, cfg.conformer_kernel, cfg.conformer_dropout,
                          cfg.norm_sets, cfg.norm_affine_per_set)

    def objective(self, task: SpeechTask, cfg: MelSpecConfig, loss: MelSpecLoss, train: TrainConfig) -> Objective:
        return MelSpecObjective(task, cfg, loss)

    def waveforms(self, out: np.ndarray, card: ModelCard, vocoder: Vocoder | None) -> list[np.ndarray]:
        return vocode(out, vocoder, parse(AudioConfig, card.crop["audio"], f"{card.name} card crop.audio").mel)


register(MelSpec())
