"""The models' and training's test settings, all from the real params.yaml (params.yaml is the one place for defaults)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import paths

from pipeline.audio.mel import AudioConfig
from pipeline.config import Params, load_params, to_plain
from pipeline.families import get_family
from pipeline.inference.card import ModelCard
from pipeline.inference.model_dir import save_model_dir
from pipeline.training.config import TrainConfig, train_config
from pipeline.training.task import Context
from pipeline.training.vocoder import VocoderLoss
from pipeline.video.roi import roi_config

TREE = load_params(paths.PARAMS)
PARAMS = Params(TREE)
AUDIO = PARAMS.parse("audio", AudioConfig)
MEL = AUDIO.mel


def train_cfg(steps: int = 2, **changes: Any) -> TrainConfig:
    """params.yaml's `train:` for a run of `steps`, with `changes` (e.g. a test's small batch)."""
    return dataclasses.replace(train_config(PARAMS, steps), **changes)


def model_cfg(family: str, profile: str = "demo", overrides: dict[str, Any] | None = None, **data: Any) -> Any:
    return get_family(family).model_config(profile, AUDIO, overrides, **data)


def loss(family: str) -> Any:
    """params.yaml's loss weights of `family`."""
    return PARAMS.parse(f"loss.{family}", get_family(family).loss_class)


def vocoder_loss() -> VocoderLoss:
    return PARAMS.parse("loss.vocoder", VocoderLoss)


def model_dir(path: Path, family: str, size: int = 96, kind: str = "v2a", variant: Any = None) -> Path:
    """A freshly initialised demo-size model of `family`, exported with the card train_v2a writes,
    trained (so its card says) on `size`-pixel crops."""
    fam = get_family(family)
    variant = fam.variant_class(family, "scratch", True) if kind == "v2a" else variant
    task = fam.task(kind, Context(), train_cfg(1), model_cfg(family), loss(family), variant)
    state, extra = task.export()
    rng = np.random.default_rng(0)
    mean = rng.standard_normal(256).astype(np.float32)
    roi = dataclasses.replace(roi_config(PARAMS), size=size)
    card = ModelCard(kind, family, f"{family}_test", fam.inputs[kind],
                     {"roi": to_plain(roi), "audio": to_plain(AUDIO), "frame": {"height": size, "width": size, "channels": 1}},
                     to_plain(train_cfg(1)), {}, {}, {**extra, "mean_speaker_embedding": (mean / np.linalg.norm(mean)).tolist()},
                     to_plain(model_cfg(family)))
    return save_model_dir(path, state, card)


def av2a_dir(path: Path, base_dir: Path) -> Path:
    """An AV2A on the base model of `base_dir` (fusion weights perturbed so the audio input matters), with its card."""
    import torch

    from pipeline.families.speech import AV2AModelConfig
    from pipeline.inference.model_dir import load_model_dir, sha256_file
    from pipeline.models.av2a import load_base

    fam = get_family("wavegan")
    base_state, base_card = load_model_dir(base_dir)
    model = fam.build("av2a", AV2AModelConfig(model_cfg("wavegan"), "concat"))
    load_base(model, base_state, base_card.extra["norm_stats"], None)
    with torch.no_grad():
        model.fusion.proj.weight.add_(0.05 * torch.randn(model.fusion.proj.weight.shape,
                                                         generator=torch.Generator().manual_seed(0)))
    base = {"name": base_card.name, "path": str(base_dir), "sha256": sha256_file(base_dir / "model.pt")}
    card = dataclasses.replace(base_card, kind="av2a", name="av2a_test", inputs=fam.inputs["av2a"],
                               extra={**base_card.extra, "norm_stats": "audio_video", "base": base},
                               model={"base": to_plain(model_cfg("wavegan")), "fusion": "concat"})
    return save_model_dir(path, model.state_dict(), card)
