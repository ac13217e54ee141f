"""The training and synthesis stages: read params, build data and task, train, export the model dir.

Paths follow docs/DATA.md. Every training run of a stage uses the same trainer, the same seed
(`seed:`), the same `train:` settings and, for V2A, the same steps per family, so the scratch
and pre-trained arms differ only in how the decoder starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch.distributed as dist

from pipeline.audio.mel import MelConfig
from pipeline.config import get
from pipeline.executor import Executor
from pipeline.models.config import hifigan_config, model_config
from pipeline.training.checkpoint import load_model_dir, save_model_dir, sha256_file
from pipeline.training.data import AudioDirSource, ConcatSource, RoiSource, WindowDataset
from pipeline.training.inference import resolve_device
from pipeline.training.synthesize import run_synthesis
from pipeline.training.tasks import A2ATask, V2ATask, VocoderTask
from pipeline.training.trainer import Context, Task, TrainConfig, Trainer, TrainingDiverged, relaunch_distributed

ROI = Path("data/roi")
SPEAKERS = Path("data/features/speakers")
MODELS = Path("models")
REPORTS = Path("reports/train")
SYNTH = Path("data/synth")
CONDITIONING = "speakers stage `conditioning`: GE2E mean of other utterances of the speaker, never the target's own audio"


def inputs_digest(paths: list[Path]) -> str:
    """Cheap identity of input files: name, size and the sha256 of their first and last MiB."""
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


def _fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _data_files(splits: list[str]) -> list[Path]:
    files = [p for s in splits for p in (ROI / "shards" / s).rglob("*.parquet")]
    return files + [SPEAKERS / p.relative_to(ROI / "shards") for p in files]


def _roi_source(splits: list[str], min_frames: int = 1) -> RoiSource:
    source = RoiSource(ROI, SPEAKERS, splits, min_frames)
    if any(source.skipped.values()):
        left = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in source.skipped.items() if n)
        print(f"{'+'.join(splits)}: {len(source)} utterances used, left out: {left}", flush=True)
    return source


def _crop_info(source: RoiSource) -> dict[str, int]:
    if not len(source):
        raise ValueError(f"no training utterances under {ROI / 'shards' / 'train'}")
    _, h, w, c = source.read(0, ["video"])["video"].shape
    return {"height": int(h), "width": int(w), "channels": int(c)}


def _mean_embedding(source: Any) -> list[float]:
    mean = source.conditioning.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32).tolist()


def _common_info(params: dict[str, Any], stage: str, name: str, cfg: TrainConfig, fingerprint: str) -> dict[str, Any]:
    return {"stage": stage, "variant": name, "train": asdict(cfg), "fingerprint": fingerprint,
            "fps": get(params, "audio.fps", 25), "conditioning": CONDITIONING, "seed": cfg.seed}


def _train(stage: str, name: str, params: dict[str, Any], cfg: TrainConfig, factory: Callable[[Context], Task],
           train: WindowDataset, val: WindowDataset | None, fingerprint: str, out_dir: Path,
           info: dict[str, Any]) -> Path:
    trainer = Trainer(factory, cfg, train, val, MODELS / "checkpoints" / stage / name, REPORTS / stage / name,
                      fingerprint, name=f"{stage} {name}")
    task = trainer.fit()
    if trainer.dist.is_main:
        state, config = task.export()
        config.update(_common_info(params, stage, name, cfg, fingerprint), step=cfg.steps, **info)
        if trainer.last_validation:
            config["validation"] = trainer.last_validation.metrics
        save_model_dir(out_dir, state, config)
        print(f"{stage} {name}: wrote {out_dir}", flush=True)
    return out_dir


def _model_config(params: dict[str, Any], family: str, **extra: Any) -> Any:
    """`model.profile` preset of `family` with `model.overrides.<family>` and the project's mel settings."""
    mel = MelConfig.from_params(params)
    overrides = {"mel": mel, "n_mels": mel.n_mels, **(get(params, f"model.overrides.{family}") or {}), **extra}
    return model_config(family, get(params, "model.profile", "demo"), overrides)


def run_stage(module: str, argv: list[str], fn: Callable[..., Any], params: dict[str, Any], usage: str = "") -> int:
    """Run a training stage: relaunch under torchrun when `train.devices` > 1, report divergence, exit code."""
    if len(argv) != len(usage.split()):
        print(f"usage: python -m {module} {usage}".rstrip(), file=sys.stderr)
        return 2
    rc = relaunch_distributed(int(get(params, "train.devices", 1) or 1), module, argv)
    if rc is not None:
        return rc
    try:
        fn(params, *argv)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def pretrain_a2a(params: dict[str, Any], family: str) -> Path:
    """Audio-only A2A pre-training of `family` on `pretrain.corpora` (own TRAIN audio, local dirs)."""
    section = get(params, f"pretrain.families.{family}")
    if not section:
        raise KeyError(f"no family {family!r} in pretrain.families; have {sorted(get(params, 'pretrain.families', {}))}")
    cfg = TrainConfig.from_params(params, section["steps"], **(section.get("train") or {}))
    mcfg = _model_config(params, family)
    spf = mcfg.samples_per_frame
    sources, described = [], []
    for corpus in get(params, "pretrain.corpora", ["own"]):
        if corpus == "own":
            sources.append(_roi_source(["train"], cfg.window_frames))
            described.append({"own": inputs_digest(_data_files(["train"]))})
        else:
            src = AudioDirSource(corpus, mcfg.mel.sample_rate, spf, cfg.window_frames,
                                 MODELS / "checkpoints" / "pretrain_a2a" / "speaker-cache",
                                 int(get(params, "pretrain.references", 4)))
            sources.append(src)
            described.append({str(corpus): [len(src), sum(src.frames)]})  # hashing every file would be slow
    train = WindowDataset(ConcatSource(sources), cfg.window_frames, spf, with_video=False)
    val = WindowDataset(_roi_source(["val"]), None, spf, with_video=False)
    loss = get(params, f"loss.{family}")
    fp = _fingerprint(stage="pretrain_a2a", family=family, cfg=asdict(cfg), model=mcfg.to_dict(), loss=loss,
                      corpora=described, val=inputs_digest(_data_files(["val"])))
    info = {"corpora": get(params, "pretrain.corpora", ["own"]), "mean_speaker_embedding": _mean_embedding(train.source)}
    return _train("pretrain_a2a", family, params, cfg, lambda ctx: A2ATask(ctx, cfg, mcfg, loss), train, val, fp,
                  MODELS / "a2a" / family, info)


def train_vocoder(params: dict[str, Any]) -> Path:
    """HiFi-GAN on the corpus's TRAIN audio (ground-truth log-mels)."""
    section = get(params, "vocoder", {}) or {}
    cfg = TrainConfig.from_params(params, section["steps"], **(section.get("train") or {}))
    mel = MelConfig.from_params(params)
    vcfg = hifigan_config(get(params, "model.profile", "demo"),
                          {"n_mels": mel.n_mels, "hop_length": mel.hop_length, **(get(params, "model.overrides.hifigan") or {})})
    spf = mel.hop_length * mel.frames_per_video_frame(get(params, "audio.fps", 25))
    train = WindowDataset(_roi_source(["train"], cfg.window_frames), cfg.window_frames, spf,
                          with_video=False)
    val = WindowDataset(_roi_source(["val"]), None, spf, with_video=False)
    loss = get(params, "loss.vocoder")
    fp = _fingerprint(stage="vocoder", cfg=asdict(cfg), model=vcfg.to_dict(), mel=asdict(mel), loss=loss,
                      data=inputs_digest(_data_files(["train", "val"])))
    return _train("vocoder", "hifigan", params, cfg, lambda ctx: VocoderTask(ctx, cfg, vcfg, mel, loss), train, val,
                  fp, MODELS / "vocoder", {})


def train_v2a(params: dict[str, Any], variant: str) -> Path:
    """One V2A variant of `v2a.variants`: family, decoder initialisation, separate batch-norm statistics."""
    spec = get(params, f"v2a.variants.{variant}")
    if not spec:
        raise KeyError(f"no variant {variant!r} in v2a.variants; have {sorted(get(params, 'v2a.variants', {}))}")
    family, decoder, separate = spec["family"], spec.get("decoder", "scratch"), bool(spec.get("separate_bn", True))
    own = get(params, "v2a.train") or {}
    cfg = TrainConfig.from_params(params, get(params, f"v2a.steps.{family}"), **own)
    source = _roi_source(["train"], cfg.window_frames)
    crop = _crop_info(source)
    mcfg = _model_config(params, family, in_channels=crop["channels"])
    train = WindowDataset(source, cfg.window_frames, mcfg.samples_per_frame)
    val = WindowDataset(_roi_source(["val"]), None, mcfg.samples_per_frame)
    a2a_state, init = None, None
    if decoder != "scratch":
        a2a_dir = MODELS / "a2a" / family
        a2a_state, a2a_config = load_model_dir(a2a_dir)
        init = {"path": str(a2a_dir), "sha256": sha256_file(a2a_dir / "model.pt"), "step": a2a_config.get("step")}
    loss = get(params, f"loss.{family}")
    fp = _fingerprint(stage="train_v2a", variant=spec, cfg=asdict(cfg), model=mcfg.to_dict(), loss=loss, init=init,
                      data=inputs_digest(_data_files(["train", "val"])))
    info = {"crop": crop, "decoder_init": init, "mean_speaker_embedding": _mean_embedding(source),
            "roi_params": {"roi": params.get("roi"), "audio": params.get("audio")}}
    factory = lambda ctx: V2ATask(ctx, cfg, mcfg, loss, decoder, separate, a2a_state)  # noqa: E731
    return _train("train_v2a", variant, params, cfg, factory, train, val, fp, MODELS / "v2a" / variant, info)


def synthesize_variant(params: dict[str, Any], variant: str) -> dict[str, Any]:
    """Every split through `models/v2a/<variant>` into `data/synth/<variant>/`."""
    section = get(params, "synthesize", {}) or {}
    use_hifigan = section.get("vocoder", "hifigan") == "hifigan"
    device = str(section.get("device", "auto"))
    # On a GPU one process batches best; a pool would put one CUDA context per worker on it.
    on_gpu = resolve_device(device).type == "cuda"
    workers = 1 if on_gpu else section.get("workers") or get(params, "executor.workers") or None
    executor = Executor(workers=workers, address=get(params, "executor.address"))
    return run_synthesis(MODELS / "v2a" / variant, MODELS / "vocoder" if use_hifigan else None, ROI, SPEAKERS,
                         SYNTH / variant, executor, int(section.get("batch_size", 8)), device)
