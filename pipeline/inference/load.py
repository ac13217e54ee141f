"""Loading any family's exported model from its card, ready to speak."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.audio.mel import AudioConfig
from pipeline.config import parse
from pipeline.inference.card import ModelCard
from pipeline.inference.model_dir import WEIGHTS, CheckpointError, load_model_dir, sha256_file
from pipeline.inference.vocoder import Vocoder, resolve_device


@dataclass
class LoadedModel:
    """A trained model in eval mode, its card, its family and its model.pt hash."""

    model: nn.Module
    card: ModelCard
    sha256: str
    device: torch.device
    family: Any  # pipeline.families.Family

    @property
    def audio(self) -> AudioConfig:
        """The audio settings it was trained on (its rates and mel analysis)."""
        return parse(AudioConfig, self.card.crop["audio"], f"{self.card.name} card crop.audio")

    @property
    def samples_per_frame(self) -> int:
        return self.audio.sample_rate // self.audio.fps

    def speak(self, batch: Mapping[str, torch.Tensor], vocoder: Vocoder | None = None) -> list[np.ndarray]:
        """Waveforms for a batch of equal-length utterances (its input streams as training batches hold them)."""
        return self.family.speak(self.model, self.card, batch, vocoder)


def load_model(model_dir: str | os.PathLike[str], device: str | torch.device | None = None) -> LoadedModel:
    """The model of `model_dir`, rebuilt by the family its card names."""
    from pipeline.families import get_family

    state, card = load_model_dir(model_dir)
    if card.family is None:
        raise ValueError(f"{model_dir} holds a {card.kind} model, not one of a model family")
    family = get_family(card.family)
    dev = resolve_device(device)
    try:
        model = family.load(card, state).to(dev)
    except RuntimeError as exc:  # load_state_dict lists every key; one line says what is wrong
        raise CheckpointError(f"{Path(model_dir) / WEIGHTS} does not fit the {card.family} model its card describes "
                              f"({state_dict_mismatch(exc)})") from exc
    return LoadedModel(model, card, sha256_file(Path(model_dir) / WEIGHTS), dev, family)


def state_dict_mismatch(exc: RuntimeError) -> str:
    """`load_state_dict`'s error (every key listed) in one line: counts of missing, unexpected and
    other-shape tensors, and the first of them."""
    counts, first = {}, None
    for line in str(exc).splitlines()[1:]:
        line = line.strip()
        for kind, prefix in (("missing", "Missing key(s)"), ("unexpected", "Unexpected key(s)"), ("of another shape", "size mismatch for ")):
            if line.startswith(prefix):
                names = re.findall(r'"([^"]+)"', line) if kind != "of another shape" else [line[len(prefix):].split(":")[0]]
                counts[kind] = counts.get(kind, 0) + len(names)
                first = first or names[0] if names else first
    if not counts:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) + f"; first: {first}"


def base_dir(card: ModelCard, model_dir: str | os.PathLike[str]) -> Path:
    """The model whose synthesis `card`'s model reads (an AV2A's base V2A: `extra.base`): the copy exported with
    it (`<model_dir>/base/`, v2s export), else the card's path; checked to be the very weights it was trained on.
    A missing or changed base is a one-line error."""
    base = card.extra.get("base")
    if not isinstance(base, Mapping) or not {"name", "path", "sha256"} <= set(base):
        raise ValueError(f"{card.kind} model {card.name!r} reads a synthesis but its card names no base model")
    bundled = Path(model_dir) / "base"
    path = bundled if (bundled / WEIGHTS).is_file() else Path(base["path"])
    if not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"base model of {card.name!r} missing: no {path / WEIGHTS} (train {base['name']!r} first)")
    sha = sha256_file(path / WEIGHTS)
    if sha != base["sha256"]:
        raise ValueError(f"base model {path} is not the one {card.name!r} was trained on "
                         f"(sha256 {sha[:12]}, card says {base['sha256'][:12]}): retrain the AV2A or restore the base")
    return path


def load_base_model(card: ModelCard, model_dir: str | os.PathLike[str], device: str | torch.device | None = None) -> LoadedModel:
    """The base model of `card`'s model at `model_dir` (see `base_dir`), loaded; it must crop as the model does."""
    path = base_dir(card, model_dir)
    loaded = load_model(path, device)
    if loaded.card.crop != card.crop:
        raise ValueError(f"base model {path} crops differently from {card.name!r}")
    return loaded
