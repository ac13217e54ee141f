"""Loading trained model directories and running them: V2A/A2A synthesis and the vocoder.

`load_vocoder(model_dir)` is also what evaluation uses for its "ground-truth mel through the
vocoder" ceiling: a trained HiFi-GAN when `model_dir/model.pt` exists, otherwise Griffin-Lim.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.mel import MelConfig
from pipeline.models.a2a import build_a2a
from pipeline.models.config import HiFiGANConfig, ModelConfig
from pipeline.models.hifigan import HiFiGAN
from pipeline.models.v2a import build_v2a, set_norm_stats
from pipeline.training.checkpoint import load_model_dir, sha256_file


def resolve_device(name: str | None = None) -> torch.device:
    """`auto` (or None): CUDA when present, else CPU; otherwise the named device."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class LoadedModel:
    """A trained A2A/V2A model in eval mode, its config.json and its model.pt hash."""

    model: nn.Module
    config: dict[str, Any]
    sha256: str
    device: torch.device

    @property
    def family(self) -> str:
        return self.config["family"]

    @property
    def mel(self) -> MelConfig:
        return MelConfig(**self.config["mel"])


def load_model(model_dir: str | os.PathLike[str], device: str | torch.device | None = None) -> LoadedModel:
    """Rebuild the A2A or V2A model of `model_dir` with the batch-norm statistics it was trained with."""
    state, config = load_model_dir(model_dir)
    builders = {"v2a": build_v2a, "a2a": build_a2a}
    if config.get("kind") not in builders:
        raise ValueError(f"{model_dir} holds a {config.get('kind')!r} model, not an A2A or V2A model")
    model = builders[config["kind"]](ModelConfig(**config["model"]))
    model.load_state_dict(state)
    set_norm_stats(model, config["norm_stats"])
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    return LoadedModel(model.to(dev).eval(), config, sha256_file(Path(model_dir) / "model.pt"), dev)


class Vocoder:
    """log-mel (n_mels, F) numpy -> waveform (F * hop,) numpy; `name` and `sha256` say which."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], name: str, sha256: str | None):
        self._fn, self.name, self.sha256 = fn, name, sha256

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        return self._fn(np.asarray(log_mel, dtype=np.float32))


def load_vocoder(model_dir: str | os.PathLike[str] | None, mel: MelConfig | None = None,
                 device: str | torch.device | None = None) -> Vocoder:
    """The HiFi-GAN of `model_dir`, or Griffin-Lim (with `mel`'s settings) when there is none."""
    if model_dir is None or not (Path(model_dir) / "model.pt").is_file():
        cfg = mel or MelConfig()
        return Vocoder(lambda m: griffin_lim(m, cfg), "griffin_lim", None)
    state, config = load_model_dir(model_dir)
    if config.get("kind") != "vocoder":
        raise ValueError(f"{model_dir} holds a {config.get('kind')!r} model, not a vocoder")
    if mel is not None and MelConfig(**config["mel"]) != mel:
        raise ValueError(f"the vocoder in {model_dir} was trained on other mel settings ({config['mel']}) than {mel}")
    net = HiFiGAN(HiFiGANConfig(**config["model"]))
    net.load_state_dict(state)
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    net = net.to(dev).eval()

    def run(log_mel: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(log_mel).unsqueeze(0).to(dev)).squeeze(0).float().cpu().numpy()

    return Vocoder(run, f"hifigan:{Path(model_dir)}", sha256_file(Path(model_dir) / "model.pt"))


def synthesize(loaded: LoadedModel, inputs: torch.Tensor, spk: np.ndarray | torch.Tensor,
               vocoder: Vocoder | None = None) -> list[np.ndarray]:
    """Waveforms (T * samples_per_frame each) for a batch of equal-length inputs.

    `inputs`: uint8 video (B, T, H, W, C) for V2A, float waveform (B, S) for A2A. MelSpec models
    go through `vocoder` (Griffin-Lim when None).
    """
    if loaded.config["kind"] == "v2a":
        x = inputs.permute(0, 1, 4, 2, 3).float().div(255.0)
    else:
        x = inputs.float()
    s = torch.as_tensor(np.asarray(spk, dtype=np.float32)).reshape(len(x), -1)
    with torch.no_grad():
        out = loaded.model(x.to(loaded.device), s.to(loaded.device)).float().cpu().numpy()
    if loaded.family == "wavegan":
        return [w.astype(np.float32) for w in out]
    vocoder = vocoder or load_vocoder(None, loaded.mel)
    return [vocoder(m).astype(np.float32) for m in out]
