"""Vocoders for log-mel models: the trained HiFi-GAN of `models/vocoder`, or Griffin-Lim.

`load_vocoder(model_dir)` is what synthesis, `v2s speak` and evaluation's reference rows
(ground-truth mel through the vocoder) all use.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.mel import MelConfig
from pipeline.config import parse
from pipeline.inference.card import require_kind
from pipeline.inference.model_dir import WEIGHTS, load_model_dir, sha256_file
from pipeline.layout import Layout
from pipeline.models.config import HiFiGANConfig
from pipeline.models.hifigan import HiFiGAN


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """`auto` (or None): CUDA when present, else CPU; otherwise the named device."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# `synthesize.vocoder`: the HiFi-GAN the `vocoder` stage trained, or Griffin-Lim (nothing to load).
VocoderName = Literal["hifigan", "griffin_lim"]


# Where each vocoder is loaded from; None means Griffin-Lim (`load_vocoder(None)`, nothing to load).
VOCODER_DIRS: dict[str, Callable[[Layout], Path | None]] = {"hifigan": lambda layout: layout.vocoder,
                                                            "griffin_lim": lambda layout: None}


def vocoder_dir(name: VocoderName, layout: Layout) -> Path | None:
    """Where vocoder `name` is loaded from (VOCODER_DIRS)."""
    return VOCODER_DIRS[name](layout)


class Vocoder:
    """log-mel (n_mels, F) numpy -> waveform (F * hop,) numpy; `name` and `sha256` say which."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], name: str, sha256: str | None):
        self._fn, self.name, self.sha256 = fn, name, sha256

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        return self._fn(np.asarray(log_mel, dtype=np.float32))


def load_vocoder(model_dir: str | os.PathLike[str] | None, mel: MelConfig | None = None,
                 device: str | torch.device | None = None) -> Vocoder:
    """The HiFi-GAN of `model_dir`, or Griffin-Lim (with `mel`'s settings) when there is none."""
    if model_dir is None or not (Path(model_dir) / WEIGHTS).is_file():
        cfg = mel or MelConfig()
        return Vocoder(lambda m: griffin_lim(m, cfg), "griffin_lim", None)
    state, card = load_model_dir(model_dir)
    require_kind(card, ("vocoder",), model_dir)
    trained_on = parse(MelConfig, card.extra["mel"], f"{model_dir} extra.mel")
    if mel is not None and trained_on != mel:
        raise ValueError(f"the vocoder in {model_dir} was trained on other mel settings ({trained_on}) than {mel}")
    net = HiFiGAN(parse(HiFiGANConfig, card.model, f"{model_dir} model"))
    net.load_state_dict(state)
    dev = resolve_device(device)
    net = net.to(dev).eval()

    def run(log_mel: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(log_mel).unsqueeze(0).to(dev)).squeeze(0).float().cpu().numpy()

    return Vocoder(run, f"hifigan:{Path(model_dir)}", sha256_file(Path(model_dir) / WEIGHTS))


def vocode(log_mels: np.ndarray, vocoder: Vocoder | None, mel: MelConfig) -> list[np.ndarray]:
    """Float32 waveforms of a batch of log-mels (B, n_mels, F) through `vocoder`, or Griffin-Lim with `mel` when None."""
    vocoder = vocoder or load_vocoder(None, mel)
    return [vocoder(m).astype(np.float32) for m in log_mels]
