"""Model files: exported model directories (`model.pt` + `card.json`) and safe torch loads.

Every trained model (A2A, V2A, vocoder, ASR, ...) is written and read here, so a model
directory has one format: the state dict (`torch.load(weights_only=True)`) beside its card.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from pipeline.atomic import atomic_dir, atomic_path
from pipeline.inference.card import CARD, ModelCard, load_card, save_card

WEIGHTS = "model.pt"


class CheckpointError(RuntimeError):
    """A checkpoint or model file that cannot be read."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def inputs_digest(paths: list[Path]) -> str:
    """Cheap identity of a model's input files: name, size and the sha256 of their first and last MiB."""
    h = hashlib.sha256()
    for p in sorted(paths):
        size = p.stat().st_size
        h.update(f"{p.as_posix()}:{size}".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read())
    return h.hexdigest()


def save_torch(path: str | os.PathLike[str], obj: Any) -> Path:
    """`torch.save` through a temporary file, so an interruption never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_torch(path: str | os.PathLike[str]) -> Any:
    """`torch.load(weights_only=True)` on CPU; any failure names the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); "
            "the file is truncated or corrupt: delete it to start the run over"
        ) from exc


def save_model_dir(directory: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], card: ModelCard) -> Path:
    """Write `model.pt` and `card.json` together: the directory appears whole or not at all."""
    with atomic_dir(directory) as tmp:
        torch.save(state_dict, tmp / WEIGHTS)
        save_card(card, tmp)
    return Path(directory)


def load_model_dir(directory: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """`(state_dict, card)` of an exported model directory."""
    d = Path(directory)
    if not (d / CARD).is_file():
        raise CheckpointError(f"not a model directory (no {CARD}): {d}")
    return load_torch(d / WEIGHTS), load_card(d)
