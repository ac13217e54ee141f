"""Griffin-Lim inversion of our log-mel: a vocoder that needs no training (a baseline and a fallback)."""
from __future__ import annotations

import numpy as np
import torch
import torchaudio

from pipeline.audio.mel import MelConfig


def griffin_lim(log_mel: np.ndarray, cfg: MelConfig, n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Log-mel (n_mels, F) as made by `LogMel` -> waveform (F * hop,) float32.

    The mel basis is rebuilt with LogMel's exact settings (Slaney scale and norm, power 1),
    inverted by least squares, and phase is estimated by `n_iter` Griffin-Lim iterations
    from a random start drawn with `seed`.
    """
    frames = log_mel.shape[-1]
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=cfg.n_fft // 2 + 1, n_mels=cfg.n_mels, sample_rate=cfg.sample_rate,
        f_min=cfg.f_min, f_max=cfg.f_max, norm="slaney", mel_scale="slaney", driver="gelsd",
    )
    phase = torchaudio.transforms.GriffinLim(
        n_fft=cfg.n_fft, n_iter=n_iter, win_length=cfg.win_length, hop_length=cfg.hop_length,
        power=1.0, length=frames * cfg.hop_length,
    )
    mel = torch.exp(torch.from_numpy(np.asarray(log_mel, dtype=np.float32)))
    # LogMel drops the final centred frame so F frames tile F * hop samples; a centred STFT of
    # that many samples has F + 1 frames, so stand in the last frame for the dropped one.
    mel = torch.cat([mel, mel[:, -1:]], dim=1)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wav = phase(inverse_mel(mel))
    return wav.numpy().astype(np.float32)
