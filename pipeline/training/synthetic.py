"""A tiny corpus in the stages' layout (roi and speaker shards), for tests and benchmarks without the data stages."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.layout import Layout
from pipeline.streams import EMBED_DIM


def write_synthetic_corpus(layout: Layout, splits: dict[str, Sequence[str]], utts_per_speaker: int = 4,
                           n_frames: int = 30, size: int = 24, channels: int = 1, samples_per_frame: int = 640,
                           seed: int = 0) -> Layout:
    """Tiny roi + speaker shards in the stages' layout, for tests and benchmarks without the data stages.

    Each speaker has its own pitch and conditioning vector; the mouth region's brightness follows
    the audio envelope, so video and audio carry related information. Returns `layout`.
    """
    from pipeline.shards import pack, shard_relpath, write_shard

    rng = np.random.default_rng(seed)
    roi_root, spk_root = layout.roi, layout.speakers
    for split, speakers in splits.items():
        for s_idx, speaker in enumerate(speakers):
            identity = rng.standard_normal(EMBED_DIM).astype(np.float32)
            pitch = 100.0 + 40.0 * s_idx
            roi_rows, spk_rows = [], []
            for u in range(utts_per_speaker):
                utt_id = f"{speaker}_{split}{u:03d}"
                t = np.arange(n_frames * samples_per_frame) / 16000.0
                envelope = np.repeat(rng.uniform(0.0, 1.0, n_frames), samples_per_frame)
                audio = (0.3 * envelope * np.sin(2 * np.pi * pitch * (1 + u / 10) * t)).astype(np.float32)
                frame_level = envelope[::samples_per_frame]
                video = (rng.integers(0, 40, (n_frames, size, size, channels))
                         + (200 * frame_level)[:, None, None, None]).clip(0, 255).astype(np.uint8)
                roi_rows.append({"utt_id": utt_id, "speaker": speaker, "split": split, "transcript": "",
                                 "n_frames": n_frames, "fps": 25.0, **pack("video", video), **pack("audio", audio),
                                 "sample_rate": 16000, "audio_pad": 0, "missing_frames": 0})
                own = identity + 0.1 * rng.standard_normal(EMBED_DIM).astype(np.float32)
                other = identity + 0.1 * rng.standard_normal(EMBED_DIM).astype(np.float32)
                spk_rows.append({"utt_id": utt_id, **pack("embedding", own), **pack("conditioning", other)})
            rel = shard_relpath(split, speaker, 0)
            write_shard(roi_root / "shards" / rel, roi_rows)
            write_shard(spk_root / rel, spk_rows)
    return layout
