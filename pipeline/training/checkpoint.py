"""Training checkpoints and exported model directories: atomic writes, safe loads, clear errors.

A checkpoint (`step-00000100.pt` under a run's checkpoint directory) holds everything a resumed
run needs to continue exactly: module, optimiser and scheduler states, every RNG state, the data
position and a fingerprint of the run's configuration and inputs. An exported model directory
holds `model.pt` (a state dict) and `config.json` (everything inference needs).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.atomic import atomic_dir, atomic_path

_CKPT = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint or model file that cannot be read."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
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


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """`(step, path)` of every finished checkpoint in `directory`, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m[1]), p) for p in d.iterdir() if (m := _CKPT.match(p.name))]
    return sorted(found)


def prune_checkpoints(directory: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for _, path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states in types `weights_only` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model_dir(directory: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write `model.pt` and `config.json` together: the directory appears whole or not at all."""
    with atomic_dir(directory) as tmp:
        torch.save(state_dict, tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(directory)


def load_model_dir(directory: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`(state_dict, config)` of an exported model directory."""
    d = Path(directory)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"not a model directory (no config.json): {d}")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    return load_torch(d / "model.pt"), config
