"""Model cards: what every exported model is, what it reads, and what it was trained on.

A card (`card.json`) sits in every exported model directory (`models/<kind>/<name>/`,
`models/vocoder/`, `models/asr/`) and, copied, in every synthesis directory
(`data/synth/<system>/`), so whoever reads a model or its output learns its kind, family and
input streams without knowing the stage that made it. `crop` holds the resolved roi and audio
settings the model was trained on: `v2s speak` crops a new video with exactly these, whatever
`params.yaml` holds today.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text
from pipeline.config import ConfigError, parse, to_plain

CARD = "card.json"


@dataclass(frozen=True)
class ModelCard:
    """An exported model: kind, family, name, inputs, the crop/audio it was trained on, and its record."""

    kind: str  # a2a | v2a | av2a | vocoder | asr | (next) lts: the stage family of models/<kind>/
    family: str | None  # the model family (pipeline.families) whose code builds and runs it; None: not a family model
    name: str  # variant, family or model name: the directory's own name
    inputs: tuple[str, ...]  # streams it reads at inference, e.g. ("video", "spk")
    crop: Mapping[str, Any]  # resolved `roi` (models that see video), `audio` and the crop's `frame` shape
    train: Mapping[str, Any]  # the training configuration (steps, batch, rates, seed, ...)
    data: Mapping[str, Any]  # identities (hashes) of the training inputs and of any model it started from
    validation: Mapping[str, Any]  # the last validation's metrics
    extra: Mapping[str, Any]  # what inference needs besides the weights (statistics set, mean voice, ...)
    model: Mapping[str, Any]  # the architecture configuration its weights fit


def card_path(path: str | os.PathLike[str]) -> Path:
    """`path` itself when it names a card file, else `<path>/card.json`."""
    p = Path(path)
    return p if p.suffix == ".json" else p / CARD


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of a model directory, a synthesis directory or a card.json file."""
    file = card_path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no model card: {file} (not a model or synthesis directory)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not a model card ({exc})") from None
    return parse(ModelCard, data, str(file))


def save_card(card: ModelCard, directory: str | os.PathLike[str]) -> Path:
    """Write `<directory>/card.json` atomically; returns its path."""
    file = Path(directory) / CARD
    write_text(file, json.dumps(to_plain(card), indent=2, sort_keys=True) + "\n")
    return file


def require_kind(card: ModelCard, kinds: tuple[str, ...], where: str | os.PathLike[str]) -> None:
    """A clear error when the model at `where` is not of one of `kinds`."""
    if card.kind not in kinds:
        raise ValueError(f"{where} holds a {card.kind} model, not {' or '.join(kinds)}")
