"""A tiny corpus in the stages' layout (roi and speaker shards), for tests and benchmarks without the data stages."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.layout import Layout
from pipeline.streams import EMBED_DIM


def write_synthetic_corpus(layout: Layout, splits: dict[str, Sequence[str]], utts_per_speaker: int = 4,
                           n_frames: int = 30, size: int = 24, channels: int = 1, samples_per_frame: int = 640,
                           seed: int = 0, clusters: int | None = None) -> Layout:
    """Tiny roi + speaker shards in the stages' layout, for tests and benchmarks without the data stages.

    Each speaker has its own pitch and conditioning vector; the mouth region's brightness follows
    the audio envelope, so video and audio carry related information. With `clusters`, units and
    prosody shards too (and their stages' json files): the units quantise the envelope (so the video
    predicts them), F0 is the tone's pitch where the envelope is loud, energy is the real feature.
    Returns `layout`.
    """
    from pipeline.shards import pack, shard_relpath, write_shard

    features: dict[str, list[dict[str, object]]] = {}

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
                if clusters:
                    features.setdefault(split + speaker, []).append(
                        _features(utt_id, frame_level, audio, pitch * (1 + u / 10), clusters))
            rel = shard_relpath(split, speaker, 0)
            write_shard(roi_root / "shards" / rel, roi_rows)
            write_shard(spk_root / rel, spk_rows)
            if clusters:
                rows = features[split + speaker]
                write_shard(layout.features("units") / rel, [{k: r[k] for k in r if k.startswith(("utt", "units"))}
                                                              for r in rows])
                write_shard(layout.features("prosody") / rel, [{k: r[k] for k in r if not k.startswith("units")}
                                                                for r in rows])
    if clusters:
        _write_feature_info(layout, clusters)
    return layout


def _features(utt_id: str, level: np.ndarray, audio: np.ndarray, pitch: float, clusters: int) -> dict[str, object]:
    """Units (2 per frame) and prosody (4 per frame) of one synthetic utterance."""
    from pipeline.audio.mel import MelConfig
    from pipeline.features.prosody import energy
    from pipeline.shards import pack

    units = np.repeat(np.minimum((level * clusters).astype(np.int16), clusters - 1), 2)
    voiced = np.repeat(level > 0.3, 4)
    f0 = np.where(voiced, pitch, 0.0).astype(np.float32)
    return {"utt_id": utt_id, **pack("units", units), **pack("f0", f0), **pack("voiced", voiced),
            **pack("energy", energy(audio, MelConfig()))}


def _write_feature_info(layout: Layout, clusters: int) -> None:
    """`units.json` and `prosody.json` as the stages write them (the parts models read), stats over train."""
    import json

    from pipeline.shards import ShardReader, unpack

    log_f0, energies = [], []
    for path in sorted((layout.features("prosody") / "train").rglob("*.parquet")):
        for r in ShardReader(path).iter_rows():
            f0, e = unpack(r, "f0"), unpack(r, "energy")
            log_f0.append(np.log(f0[f0 > 0]))
            energies.append(e)
    lf, en = np.concatenate(log_f0), np.concatenate(energies)
    stats = {"log_f0_mean": float(lf.mean()), "log_f0_std": float(lf.std()), "voiced_frames": int(lf.size),
             "energy_mean": float(en.mean()), "energy_std": float(en.std()), "frames": int(en.size)}
    (layout.features("prosody") / "prosody.json").write_text(json.dumps({"stats": {"global": stats}}))
    (layout.features("units") / "units.json").write_text(
        json.dumps({"source": "mfcc", "features": {"kind": "mfcc"}, "fit": {"clusters": clusters}}))
