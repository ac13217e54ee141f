"""The `roi` stage: every usable clip to mouth crops and aligned audio, in sharded Parquet.

One function, `crop_clip`, turns a video file into crops; the stage (`run`) and `v2s crop`
both call it, so a user's own video is cropped exactly like the training data.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.atomic import atomic_dir, atomic_path
from pipeline.config import Params
from pipeline.executor import Executor
from pipeline.manifest import MANIFEST_SCHEMA
from pipeline.shards import pack, plan_shards, write_shard
from pipeline.video.crop import CropConfig, FrameFile, MouthCrop, crop_mouth, mouth_maps, warp
from pipeline.video.decode import Clip, ClipError, FrameStream, check_length, clip_audio, decode_clip
from pipeline.video.faces import MAX_FACES, Face, choose, link, rank
from pipeline.video.landmarks import KEYPOINTS, check_backend, check_name, get_detector

ROI_MANIFEST_SCHEMA = MANIFEST_SCHEMA.append(pa.field("shard", pa.string())).append(pa.field("row", pa.int64()))


@dataclass(frozen=True)
class RoiConfig:
    """Everything that decides a clip's crop and audio: the `roi:` section, and `audio.fps`/`audio.sample_rate`.

    `to_plain(cfg)` is the resolved crop a model card records; `parse(RoiConfig, that)` rebuilds it.
    """

    backend: str  # landmark detector: mediapipe | face_alignment
    size: int
    gray: bool
    mouth_width: float
    smooth_window: int
    max_missing: float
    min_frames: int  # shorter clips are rejected (frames at `fps`)
    max_side: int  # larger videos are decoded scaled down to this longer side
    shard_size: int  # utterances per shard at most
    max_reject_fraction: float  # the stage fails above this share of rejected clips
    fps: int  # audio.fps
    sample_rate: int  # audio.sample_rate

    def __post_init__(self) -> None:
        check_name(self.backend)

    @property
    def crop(self) -> CropConfig:
        return CropConfig(self.size, self.gray, self.mouth_width, self.smooth_window, self.max_missing)


def roi_config(params: Params) -> RoiConfig:
    """`roi:` with the audio rates it decodes at, as the stage and `v2s crop` read them."""
    return params.parse("roi", RoiConfig, fps=params.raw("audio.fps"), sample_rate=params.raw("audio.sample_rate"))


@dataclass(frozen=True)
class ClipCrop:
    """A decoded clip and its mouth crops; with `face` chosen, every face found and the one cropped."""

    clip: Clip
    mouth: MouthCrop
    faces: tuple[Face, ...] = ()
    face: Face | None = None


def crop_clip(path: str | os.PathLike[str], cfg: RoiConfig, require_audio: bool = True,
              face: int | None = None, to_file: bool = False) -> ClipCrop:
    """Decode `path`, find the face in every frame and crop the mouth; `ClipError` says why not.

    `face`: look for up to MAX_FACES faces and crop face number `face` (1: found in the most frames,
    then the largest); a `ValueError` when there is no such face. None: track one face, as the roi
    stage does on corpus clips. With `face`, the video is streamed, and `to_file` keeps its crops
    in a `FrameFile` instead of memory (a long video; the caller closes it)."""
    if face is not None and face < 1:
        raise ValueError(f"--face {face}: faces are numbered from 1")
    if face is None:
        clip = decode_clip(path, cfg.fps, cfg.sample_rate, cfg.max_side, cfg.min_frames, require_audio)
        points = get_detector(cfg.backend).detect(clip.frames)
        return ClipCrop(clip, crop_mouth(clip.frames, points, cfg.crop))
    # Anyone's video, of any length: decoded twice (landmarks, then crops) and never held whole, so
    # memory does not grow with its length. The crops are those of one decode (the same bytes).
    stream = FrameStream(path, cfg.fps, cfg.max_side)
    detections = get_detector(cfg.backend, max_faces=MAX_FACES).detect_all(f for chunk in stream for f in chunk)
    n = len(detections)
    check_length(n, cfg.fps, cfg.min_frames)
    faces = rank(link(detections), stream.frame_size)
    chosen = choose(faces, face) if faces else None
    # no face in any frame: the crop refuses the clip with its usual reason
    maps, missing = mouth_maps(chosen.points if chosen else np.full((n, len(KEYPOINTS), 2), np.nan), cfg.crop)
    frame_shape = (cfg.crop.size, cfg.crop.size, 1 if cfg.crop.gray else 3)
    video: np.ndarray | FrameFile = FrameFile(frame_shape) if to_file else np.empty((n, *frame_shape), dtype=np.uint8)
    done = 0
    for chunk in FrameStream(path, cfg.fps, cfg.max_side):
        if done + len(chunk) > n:
            break
        crops = warp(chunk, maps[done : done + len(chunk)], cfg.crop)
        if isinstance(video, FrameFile):
            video.append(crops)
        else:
            video[done : done + len(chunk)] = crops
        done += len(chunk)
    if done != n:
        raise ClipError(f"unstable decode: {n} frames at first, a different number on the second pass")
    audio, pad = clip_audio(path, n, cfg.fps, cfg.sample_rate, stream.has_audio, require_audio)
    return ClipCrop(Clip(None, n, cfg.fps, audio, cfg.sample_rate, pad), MouthCrop(video, maps, missing), tuple(faces), chosen)


@dataclass(frozen=True)
class Rejected:
    """A clip the stage could not use, and why."""

    reason: str


def process_utterance(item: dict[str, Any], cfg: RoiConfig) -> dict[str, Any] | Rejected:
    """One manifest row to one shard row (DATA.md `roi` schema), or the reason it was rejected."""
    try:
        result = crop_clip(item["source"], cfg)
    except ClipError as exc:
        return Rejected(str(exc))
    clip = result.clip
    return {
        "utt_id": item["utt_id"], "speaker": item["speaker"], "split": item["split"],
        "transcript": item["transcript"], "n_frames": clip.n_frames, "fps": clip.fps,
        **pack("video", result.mouth.video), **pack("audio", clip.audio),
        "sample_rate": clip.sample_rate, "audio_pad": clip.audio_pad, "missing_frames": int(result.mouth.missing.sum()),
    }


@dataclass(frozen=True)
class RoiSummary:
    """Counts of one stage run, and whether too many clips were rejected."""

    clips: int
    accepted: int
    shards: int
    frames: int
    seconds: float
    reasons: Counter[str]
    max_reject_fraction: float

    @property
    def rejected(self) -> int:
        return self.clips - self.accepted

    @property
    def failed(self) -> bool:
        return self.clips == 0 or self.rejected > self.max_reject_fraction * self.clips

    def line(self) -> str:
        kinds = "; ".join(f"{k}: {n}" for k, n in self.reasons.most_common())
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (
            f"roi: {self.accepted} of {self.clips} clips cropped into {self.shards} shards, {self.rejected} rejected"
            f"{f' ({kinds})' if kinds else ''}; {self.frames} frames in {self.seconds:.1f} s ({rate:.0f} frames/s)"
        )


def run(cfg: RoiConfig, executor: Executor, manifest: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> RoiSummary:
    """Crop every `ok` clip of `manifest` into `out_dir/shards/` and write `out_dir/manifest.parquet`.

    The output manifest is the input one with roi's rejections applied, `shard`/`row` for the
    accepted clips, and their `n_frames`/`fps` as decoded (every clip is at `audio.fps` now).
    Results stream from the executor in shard-plan order and each shard is written as soon as
    its last clip arrives, all inside a temporary directory that replaces `out_dir` only once
    complete.
    """
    check_backend(cfg.backend)
    rows = pq.read_table(manifest).to_pylist()
    ok = {r["utt_id"]: r for r in rows if r["status"] == "ok"}
    plan = plan_shards(((r["split"], r["speaker"], u) for u, r in ok.items()), cfg.shard_size)
    items = [ok[u] for utts in plan.values() for u in utts]
    start = time.perf_counter()
    work = partial(process_utterance, cfg=cfg)
    results = executor.imap(work, items, desc="roi", total=len(items))
    frames, shards, reasons = 0, 0, Counter()
    with atomic_dir(out_dir) as tmp:
        for relpath, utts in plan.items():
            kept = []
            for utt in utts:
                result, row = next(results), ok[utt]  # in input order, which is plan order
                if isinstance(result, dict):
                    row.update(n_frames=result["n_frames"], fps=float(result["fps"]), shard=relpath, row=len(kept))
                    kept.append(result)
                    frames += result["n_frames"]
                else:
                    reason = result.reason if isinstance(result, Rejected) else f"roi failed: {result.message}"
                    row.update(status="rejected", reason=reason)
                    reasons[reason.split(":")[0]] += 1
            if kept:
                write_shard(tmp / "shards" / relpath, kept)
                shards += 1
        _write_manifest(rows, tmp / "manifest.parquet")
    accepted = len(items) - sum(reasons.values())
    seconds = time.perf_counter() - start
    return RoiSummary(len(items), accepted, shards, frames, seconds, reasons, cfg.max_reject_fraction)


def _write_manifest(rows: list[dict[str, Any]], path: Path) -> None:
    table = pa.Table.from_pylist([{"shard": None, "row": None, **r} for r in rows], schema=ROI_MANIFEST_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
