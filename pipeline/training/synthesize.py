"""Synthesis for every split: a trained V2A model over the roi shards -> `data/synth/<variant>/`.

Output shards mirror the roi shards' relative paths and row order (`utt_id`, packed float32
`audio` of exactly n_frames * samples_per_frame samples, `sample_rate`); `info.json` records
the model's and vocoder's sha256. One shard is one executor task, so the same code runs in a
local process pool or on a Dask cluster.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pipeline.atomic import atomic_dir
from pipeline.executor import Executor, Failure
from pipeline.shards import ShardReader, list_shards, pack, unpack, write_shard
from pipeline.training.data import read_conditioning
from pipeline.training.inference import LoadedModel, Vocoder, load_model, load_vocoder, synthesize

SPLITS = ("train", "val", "test", "unseen")


@dataclass(frozen=True)
class ShardJob:
    """One roi shard to synthesise (paths are absolute or relative to the working directory)."""

    model_dir: str
    vocoder_dir: str | None
    roi_shard: str
    speaker_shard: str
    out_shard: str
    batch_size: int
    device: str


@lru_cache(maxsize=2)
def _models(model_dir: str, vocoder_dir: str | None, device: str) -> tuple[LoadedModel, Vocoder | None]:
    # Once per worker process: every shard job of a run uses the same model.
    loaded = load_model(model_dir, device)
    vocoder = load_vocoder(vocoder_dir, loaded.mel, device) if loaded.family == "melspec" else None
    return loaded, vocoder


def synthesize_shard(job: ShardJob) -> tuple[int, list[str]]:
    """Synthesise every utterance of one roi shard into its output shard.

    Returns the row count and the utterances the speakers stage had no conditioning for: those
    are spoken with the model's mean training-speaker embedding, so every roi row has audio.
    """
    loaded, vocoder = _models(job.model_dir, job.vocoder_dir, job.device)
    spf = int(loaded.config["samples_per_frame"])
    reader = ShardReader(job.roi_shard)
    conditioning = read_conditioning(job.speaker_shard, reader.utt_ids)
    mean = np.asarray(loaded.config["mean_speaker_embedding"], dtype=np.float32)
    fallback = [u for u, c in zip(reader.utt_ids, conditioning) if c is None]
    rows: list[dict[str, Any]] = []
    pending: list[tuple[str, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        video = torch.from_numpy(np.stack([v for _, v, _ in pending]))
        wavs = synthesize(loaded, video, np.stack([c for _, _, c in pending]), vocoder)
        for (utt, v, _), wav in zip(pending, wavs):
            if len(wav) != len(v) * spf:
                raise ValueError(f"{utt}: synthesised {len(wav)} samples for {len(v)} frames")
            rows.append({"utt_id": utt, **pack("audio", wav), "sample_rate": int(loaded.config["sample_rate"])})
        pending.clear()

    for row, spk in zip(reader.iter_rows(columns=["utt_id", "video"]), conditioning):
        video = unpack(row, "video")
        # batch consecutive utterances of equal length (GRID clips are all 75 frames)
        if pending and (len(pending) == job.batch_size or len(pending[0][1]) != len(video)):
            flush()
        pending.append((row["utt_id"], video, mean if spk is None else spk))
    if pending:
        flush()
    write_shard(job.out_shard, rows)
    return len(rows), fallback


def run_synthesis(model_dir: str | os.PathLike[str], vocoder_dir: str | os.PathLike[str] | None,
                  roi_root: str | os.PathLike[str], speakers_root: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], executor: Executor, batch_size: int = 8,
                  device: str = "auto", splits: Sequence[str] = SPLITS) -> dict[str, Any]:
    """Synthesise every roi shard of `splits` into `out_dir` (replaced whole, atomically); returns info.json."""
    start = time.perf_counter()
    shards_root = Path(roi_root) / "shards"
    rels = [p.relative_to(shards_root).as_posix() for s in splits for p in list_shards(shards_root / s)]
    if not rels:
        raise FileNotFoundError(f"no roi shards under {shards_root} for splits {list(splits)}")
    loaded, vocoder = _models(str(model_dir), str(vocoder_dir) if vocoder_dir else None, device)
    with atomic_dir(out_dir) as tmp:
        jobs = [ShardJob(str(model_dir), str(vocoder_dir) if vocoder_dir else None, str(shards_root / r),
                         str(Path(speakers_root) / r), str(Path(tmp) / r), batch_size, device) for r in rels]
        counts: dict[str, int] = {s: 0 for s in splits}
        fallback: list[str] = []
        for rel, result in zip(rels, executor.imap(synthesize_shard, jobs, desc="synthesize")):
            if isinstance(result, Failure):
                raise RuntimeError(f"synthesis of {rel} failed: {result.message}\n{result.traceback}")
            counts[rel.split("/")[0]] += result[0]
            fallback += result[1]
        info = {
            "model": str(model_dir), "model_sha256": loaded.sha256, "family": loaded.family,
            "variant": loaded.config.get("variant"), "checkpoint_step": loaded.config.get("step"),
            "vocoder": vocoder.name if vocoder else None, "vocoder_sha256": vocoder.sha256 if vocoder else None,
            "sample_rate": int(loaded.config["sample_rate"]), "utterances": counts, "shards": len(rels),
            "mean_embedding_for": fallback,  # no conditioning from the speakers stage: spoken with the mean voice
            "seconds": round(time.perf_counter() - start, 2),
        }
        (Path(tmp) / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return info
