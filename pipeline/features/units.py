"""Speech units: k-means labels of 50 Hz frame features, two per 25 fps video frame.

The frame features are HuBERT layer features (`units.source: hubert`, as in Kim et al. 2023)
or, offline by default, MFCC+deltas (`units.source: mfcc`), the targets of HuBERT's own first
training iteration. k-means is fitted on frames of a seeded sample of TRAIN utterances only
(`units.fit_fraction` of them, capped at `units.max_fit_frames` frames), then every utterance
of every split is labelled. Unit t summarises 16 kHz samples [320t, 320t + 320), so video
frame f owns units 2f and 2f + 1 at 25 fps; each utterance gets round(n_frames * 50 / fps)
units (the last unit is repeated, or extra ones cut, only when the audio is not exactly
n_frames / fps seconds long, which roi guarantees it is).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.atomic import atomic_dir, write_text
from pipeline.executor import Executor, Failure
from pipeline.features import mfcc
from pipeline.features.hubert import FRAME_RATE, SAMPLE_RATE, HubertSpec, hubert_extractor
from pipeline.features.kmeans import KMeansConfig, assign, describe, fit_kmeans
from pipeline.features.stage import (
    Outcome,
    Result,
    Utterance,
    UttKey,
    fit_frames,
    index_roi,
    map_batches,
    write_aligned,
)
from pipeline.shards import pack


@dataclass(frozen=True)
class UnitsConfig:
    """The `units:` section of params.yaml."""

    source: Literal["mfcc", "hubert"]
    checkpoint: str  # for source hubert: a hub id or a local directory
    layer: int  # HuBERT transformer layer whose output is clustered
    clusters: int
    fit_fraction: float  # share of TRAIN utterances whose frames fit k-means ...
    max_fit_frames: int  # ... stopping before this many frames
    chunk_seconds: float
    context_seconds: float
    batch_size: int  # utterances per executor task and HuBERT forward pass
    device: str  # auto | cpu | cuda
    kmeans: KMeansConfig

    def __post_init__(self) -> None:
        if not 0 < self.fit_fraction <= 1:
            raise ValueError(f"units.fit_fraction={self.fit_fraction}: must be in (0, 1]")

    @property
    def hubert(self) -> HubertSpec:
        return HubertSpec(checkpoint=self.checkpoint, layer=self.layer, chunk_seconds=self.chunk_seconds,
                          context_seconds=self.context_seconds, max_batch=self.batch_size, device=self.device)


def unit_count(key: UttKey) -> int:
    """Units of an utterance: its video frames times units per frame (2 at 25 fps)."""
    return round(key.n_frames * FRAME_RATE / key.fps)


def frame_features(cfg: UnitsConfig, batch: list[Utterance]) -> list[np.ndarray | Failure]:
    """50 Hz features (frames, dim) of each utterance, or why it has none."""
    out: list[np.ndarray | Failure | None] = [None] * len(batch)
    audios: dict[int, np.ndarray] = {}
    for i, utt in enumerate(batch):
        try:
            audios[i] = utt.audio_at(SAMPLE_RATE)
        except ValueError as exc:
            out[i] = Failure(f"ValueError: {exc}")
    if cfg.source == "hubert":
        feats = hubert_extractor(cfg.hubert)(list(audios.values()))
    else:
        feats = [mfcc.mfcc_features(a) for a in audios.values()]
    for i, f in zip(audios, feats):
        out[i] = f
    return out  # type: ignore[return-value] - every slot is filled


def _features_task(cfg: UnitsConfig, batch: list[Utterance]) -> list[Result]:
    return [f if isinstance(f, Failure) else {"features": f} for f in frame_features(cfg, batch)]


def _units_task(cfg: UnitsConfig, centroids: np.ndarray, batch: list[Utterance]) -> list[Result]:
    out: list[Result] = []
    for utt, f in zip(batch, frame_features(cfg, batch)):
        if isinstance(f, Failure):
            out.append(f)
        else:
            labels = fit_frames(assign(f, centroids), unit_count(utt.key))
            out.append(pack("units", labels.astype(np.int16)))
    return out


def select_fit_utterances(keys: list[UttKey], cfg: UnitsConfig, seed: int) -> list[UttKey]:
    """A seeded sample of the TRAIN utterances: `fit_fraction` of them, within `max_fit_frames` frames."""
    train = sorted((k for k in keys if k.split == "train"), key=lambda k: k.utt_id)
    if not train:
        raise ValueError("no train utterances in the roi shards: k-means units are fitted on the train split only")
    order = np.random.default_rng(seed).permutation(len(train))[: ceil(cfg.fit_fraction * len(train))]
    chosen: list[UttKey] = []
    frames = 0
    for i in order:
        n = unit_count(train[i])
        if chosen and frames + n > cfg.max_fit_frames:
            break
        chosen.append(train[i])
        frames += n
    return sorted(chosen, key=lambda k: (k.shard, k.row))


def _training_frames(cfg: UnitsConfig, seed: int, roi_root: Path, fit_keys: list[UttKey], executor: Executor) -> np.ndarray:
    task = functools.partial(_features_task, cfg)
    # A failing utterance fails again in the labelling pass, which records its reason.
    parts = [r["features"] for _, r in map_batches(task, roi_root, fit_keys, executor, cfg.batch_size, "units: fit features")
             if not isinstance(r, Failure)]
    frames = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    if len(frames) > cfg.max_fit_frames:  # one utterance longer than the cap
        keep = np.sort(np.random.default_rng(seed).choice(len(frames), cfg.max_fit_frames, replace=False))
        frames = frames[keep]
    return frames


def _source_info(cfg: UnitsConfig) -> dict[str, Any]:
    if cfg.source == "mfcc":
        return {"kind": "mfcc", "dim": mfcc.DIM, "definition": "Kaldi MFCC (13 cepstra, 23 mel bins, no energy, no dither) "
                "+ deltas + delta-deltas (torchaudio)", "frame_length_ms": mfcc.FRAME_LENGTH_MS,
                "frame_shift_ms": mfcc.FRAME_SHIFT_MS}
    import transformers

    ext = hubert_extractor(cfg.hubert)
    return {"kind": "hubert", "checkpoint": cfg.hubert.checkpoint, "layer": cfg.hubert.layer,
            "num_layers": ext.num_layers, "dim": ext.hidden_size, "normalized_input": ext.normalize,
            "normalized_input_from": ext.normalize_from, "chunk_seconds": cfg.hubert.chunk_seconds,
            "context_seconds": cfg.hubert.context_seconds, "transformers": transformers.__version__}


def run_units(cfg: UnitsConfig, seed: int, executor: Executor, roi_root: str | Path, out_root: str | Path) -> Outcome:
    """Fit k-means on train frames (sampled and seeded by `seed`), label every utterance, write aligned
    unit shards under `out_root` mirroring the roi shards under `roi_root`, and metadata."""
    roi_root = Path(roi_root)
    keys = index_roi(roi_root)
    source = _source_info(cfg)  # loads HuBERT here first, so a missing checkpoint stops the stage at once
    fit_keys = select_fit_utterances(keys, cfg, seed)
    fit = fit_kmeans(_training_frames(cfg, seed, roi_root, fit_keys, executor), cfg.kmeans, cfg.clusters, seed)
    task = functools.partial(_units_task, cfg, fit.centroids)
    with atomic_dir(out_root) as tmp:
        np.save(tmp / "centroids.npy", fit.centroids)
        outcome = write_aligned(tmp, map_batches(task, roi_root, keys, executor, cfg.batch_size, "units"), "units")
        meta = {
            "source": cfg.source, "features": source, "unit_rate_hz": FRAME_RATE,
            "units_per_video_frame": {f"{fps:g}": FRAME_RATE / fps for fps in sorted({k.fps for k in keys})},
            "alignment": "unit t covers 16 kHz samples [320t, 320t+320); video frame f owns units "
                         "f*r .. f*r+r-1 (r = units_per_video_frame); an utterance has round(n_frames*50/fps) units, "
                         "the last one repeated or extra ones cut if its audio is not exactly n_frames/fps s long",
            "column": "units: int16 cluster index per 20 ms",
            "centroids": "centroids.npy",
            "fit": {"split": "train", "utterances": len(fit_keys), "fit_fraction": cfg.fit_fraction,
                    "max_fit_frames": cfg.max_fit_frames, **describe(cfg.kmeans, cfg.clusters, fit, seed)},
            **outcome.summary(),
        }
        write_text(tmp / "units.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return outcome


def units_info(units_dir: str | Path) -> dict[str, Any]:
    """The unit source (`mfcc` or `hubert` with its checkpoint and layer) and the cluster count, from `units.json`."""
    path = Path(units_dir) / "units.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run the units stage first")
    meta = json.loads(path.read_text(encoding="utf-8"))
    source = meta["features"]
    name = source["kind"] if source["kind"] == "mfcc" else f"hubert:{source['checkpoint']}:layer{source['layer']}"
    return {"source": name, "clusters": int(meta["fit"]["clusters"])}
