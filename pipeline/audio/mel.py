"""The log-mel spectrogram every model, vocoder and feature stage uses (one definition)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio


@dataclass(frozen=True)
class MelConfig:
    """Log-mel analysis settings; `hop_length` divides samples-per-video-frame exactly."""

    sample_rate: int = 16000
    n_fft: int = 640
    win_length: int = 640
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5

    def frames_per_video_frame(self, fps: float) -> int:
        """Mel frames per video frame (4 at 16 kHz, hop 160, 25 fps); must be an integer."""
        per = self.sample_rate / fps / self.hop_length
        if abs(per - round(per)) > 1e-9:
            raise ValueError(f"hop {self.hop_length} does not divide {self.sample_rate}/{fps} samples per frame")
        return int(round(per))


@dataclass(frozen=True)
class AudioConfig:
    """The `audio:` section of params.yaml: every stage's sample and frame rate, and the log-mel analysis."""

    sample_rate: int
    fps: int  # video frame rate every clip is brought to
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float

    def __post_init__(self) -> None:
        self.mel.frames_per_video_frame(self.fps)  # mel frames must tile video frames: refuse the params at once

    @property
    def mel(self) -> MelConfig:
        """The log-mel analysis these settings describe (`log_floor` is MelConfig's own)."""
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                         hop_length=self.hop_length, n_mels=self.n_mels, f_min=self.f_min, f_max=self.f_max)


class LogMel(torch.nn.Module):
    """Waveform (..., samples) -> natural-log mel (..., n_mels, samples // hop)."""

    def __init__(self, cfg: MelConfig = MelConfig()):
        super().__init__()
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
            hop_length=cfg.hop_length, n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max,
            power=1.0, center=True, norm="slaney", mel_scale="slaney",
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.mel(wav)
        # center=True gives samples // hop + 1 frames; drop the last so frames tile the signal exactly.
        n = wav.shape[-1] // self.cfg.hop_length
        return torch.log(torch.clamp(spec[..., :n], min=self.cfg.log_floor))


def log_mel(audio: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """Numpy convenience: (samples,) float -> (n_mels, frames) float32."""
    with torch.no_grad():
        return LogMel(cfg)(torch.from_numpy(np.asarray(audio, dtype=np.float32))).numpy()
