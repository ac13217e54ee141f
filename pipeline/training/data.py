"""Training data over the roi and speaker shards, plus audio-only corpora in local directories.

A *source* is an index of utterances that reads one utterance at a time (never the corpus
whole): `RoiSource` joins `data/roi/shards/<rel>` with `data/features/speakers/<rel>` row by
row; `AudioDirSource` reads a local LibriTTS/VCTK-style directory for audio pre-training.
`WindowDataset` cuts a random fixed-length window of `T` video frames with the aligned
`T * samples_per_frame` audio samples; `ResumableSampler` decides the data order from the seed
and the epoch alone, and can start mid-epoch, which is what makes resumed runs exact.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, DistributedSampler

from pipeline.audio.io import read_audio
from pipeline.shards import ShardReader, list_shards, unpack

EMBED_DIM = 256
AUDIO_EXTENSIONS = (".wav", ".flac")


@dataclass(frozen=True)
class Utterance:
    """Where one utterance lives and how long it is (in video frames)."""

    utt_id: str
    speaker: str
    split: str
    shard: str
    row: int
    n_frames: int


def read_conditioning(path: str | os.PathLike[str], utt_ids: Sequence[str]) -> list[np.ndarray | None]:
    """Conditioning vectors of a speaker shard, checked against the roi shard's `utt_ids`;
    None where the speakers stage recorded a failure for the utterance."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"speaker shard missing: {path}")
    names = pq.read_schema(path).names
    rows = pq.read_table(path, columns=[c for c in names if c == "utt_id" or c.startswith("conditioning")]).to_pylist()
    if [r["utt_id"] for r in rows] != list(utt_ids):
        raise ValueError(f"{path}: utterances differ from its roi shard (the stages are out of sync)")
    return [None if r.get("conditioning") is None else unpack(r, "conditioning").astype(np.float32).reshape(-1)
            for r in rows]


class RoiSource:
    """Utterances of the roi shards of `splits`, each with its speaker-shard conditioning embedding.

    Utterances shorter than `min_frames` or without a conditioning vector are left out (counted
    in `skipped`).
    """

    def __init__(self, roi_root: str | os.PathLike[str], speakers_root: str | os.PathLike[str],
                 splits: Sequence[str], min_frames: int = 1):
        self.roi_root = Path(roi_root) / "shards"
        self.speakers_root = Path(speakers_root)
        self.utts: list[Utterance] = []
        self.skipped: dict[str, int] = {"too_short": 0, "no_conditioning": 0}
        cond: list[np.ndarray] = []
        for split in splits:
            for path in list_shards(self.roi_root / split):
                rel = path.relative_to(self.roi_root).as_posix()
                meta = pq.read_table(path, columns=["utt_id", "speaker", "n_frames"]).to_pylist()
                embeddings = read_conditioning(self.speakers_root / rel, [m["utt_id"] for m in meta])
                for row, (m, e) in enumerate(zip(meta, embeddings)):
                    if m["n_frames"] < min_frames or e is None:
                        self.skipped["too_short" if e is not None else "no_conditioning"] += 1
                        continue
                    self.utts.append(Utterance(m["utt_id"], m["speaker"], split, rel, row, int(m["n_frames"])))
                    cond.append(e)
        self.conditioning = np.stack(cond).astype(np.float32) if cond else np.zeros((0, EMBED_DIM), np.float32)
        self._readers: dict[str, ShardReader] = {}

    def __len__(self) -> int:
        return len(self.utts)

    def __getstate__(self) -> dict[str, Any]:
        # Open Parquet files do not pickle; DataLoader workers reopen their own.
        return {**self.__dict__, "_readers": {}}

    def _reader(self, shard: str) -> ShardReader:
        if shard not in self._readers:
            self._readers[shard] = ShardReader(self.roi_root / shard)
        return self._readers[shard]

    def n_frames(self, i: int) -> int:
        return self.utts[i].n_frames

    def read(self, i: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """Arrays `columns` (`video` T x H x W x C uint8, `audio` float32) of utterance `i`."""
        u = self.utts[i]
        row = self._reader(u.shard).read(u.row, columns=["utt_id", *columns])
        if row["utt_id"] != u.utt_id:
            raise ValueError(f"{u.shard} row {u.row} is {row['utt_id']}, expected {u.utt_id}")
        return {c: unpack(row, c) for c in columns}


class AudioDirSource:
    """Audio-only corpus in a local directory (LibriTTS, VCTK, ...): `<root>/<speaker>/.../*.wav|flac`.

    Audio is resampled to `sample_rate`. Each file's conditioning is the re-normalised mean GE2E
    embedding of up to `per_speaker` *other* files of its speaker (never its own audio), like the
    speakers stage's `conditioning`; computed once and cached in `cache_dir`.
    """

    def __init__(self, root: str | os.PathLike[str], sample_rate: int, samples_per_frame: int, min_frames: int,
                 cache_dir: str | os.PathLike[str], per_speaker: int = 4):
        import soundfile as sf

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"pre-training corpus directory not found: {self.root}")
        self.sample_rate = sample_rate
        self.samples_per_frame = samples_per_frame
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        self.files: list[Path] = []
        self.frames: list[int] = []
        for f in files:
            info = sf.info(str(f))
            n = int(info.frames * sample_rate / info.samplerate) // samples_per_frame
            if n >= min_frames:
                self.files.append(f)
                self.frames.append(n)
        if not self.files:
            raise ValueError(f"no audio files of at least {min_frames} frames under {self.root}")
        self.speakers = [f.relative_to(self.root).parts[0] for f in self.files]
        self.conditioning = self._speaker_conditioning(Path(cache_dir), per_speaker)

    def _speaker_conditioning(self, cache_dir: Path, per_speaker: int) -> np.ndarray:
        key = hashlib.sha256("\n".join(str(f) for f in self.files).encode() + str(per_speaker).encode()).hexdigest()[:16]
        cache = cache_dir / f"speakers-{key}.npy"
        if cache.is_file():
            return np.load(cache)
        from pipeline.atomic import atomic_path
        from pipeline.features.speakers import embed

        by_speaker: dict[str, list[int]] = {}
        for i, s in enumerate(self.speakers):
            by_speaker.setdefault(s, []).append(i)
        out = np.zeros((len(self.files), EMBED_DIM), np.float32)
        for speaker, members in by_speaker.items():
            # per_speaker + 1 references, so every file has per_speaker that are not itself.
            emb = {}
            for i in members[: per_speaker + 1]:
                try:
                    emb[i] = embed(self.read_audio(i), self.sample_rate)
                except ValueError:  # no speech found: not a usable reference
                    continue
            if not emb:
                raise ValueError(f"{self.root}: no usable speaker reference among the first files of speaker {speaker}")
            for i in members:
                others = [v for j, v in emb.items() if j != i] or list(emb.values())
                mean = np.mean(others[:per_speaker], axis=0)
                out[i] = mean / max(float(np.linalg.norm(mean)), 1e-8)  # re-normalised, as the speakers stage does
        with atomic_path(cache) as tmp:
            np.save(tmp, out)
        return out

    def __len__(self) -> int:
        return len(self.files)

    def n_frames(self, i: int) -> int:
        return self.frames[i]

    def read_audio(self, i: int) -> np.ndarray:
        audio, _ = read_audio(self.files[i], self.sample_rate)
        return audio

    def read(self, i: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
        if set(columns) - {"audio"}:
            raise ValueError(f"{self.root} is audio-only; cannot read {sorted(set(columns) - {'audio'})}")
        return {"audio": self.read_audio(i)}


class ConcatSource:
    """Several sources as one index (e.g. the corpus's own audio plus LibriTTS)."""

    def __init__(self, sources: Sequence[Any]):
        self.sources = list(sources)
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources]).tolist()
        self.conditioning = np.concatenate([s.conditioning for s in self.sources]) if self.sources else np.zeros((0, EMBED_DIM), np.float32)

    def __len__(self) -> int:
        return self._offsets[-1]

    def _locate(self, i: int) -> tuple[Any, int]:
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return self.sources[k], i - self._offsets[k]

    def n_frames(self, i: int) -> int:
        s, j = self._locate(i)
        return s.n_frames(j)

    def read(self, i: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
        s, j = self._locate(i)
        return s.read(j, columns)


def crop_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of one window's random offset: a function of (seed, epoch, utterance) only."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest(), "little")


class WindowDataset(Dataset):
    """Random `window_frames`-frame windows: `video` (T,C,H,W) uint8, `audio` (T*spf,), `spk` (256,).

    Items are addressed by `(index, crop_seed)` pairs from `ResumableSampler`; a whole
    utterance (no crop) when `window_frames` is None.
    """

    def __init__(self, source: Any, window_frames: int | None, samples_per_frame: int, with_video: bool = True):
        self.source = source
        self.window = window_frames
        self.spf = samples_per_frame
        self.columns = ["video", "audio"] if with_video else ["audio"]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        n = self.source.n_frames(index)
        arrays = self.source.read(index, self.columns)
        start, length = 0, n
        if self.window is not None:
            length = self.window
            start = int(np.random.default_rng(seed).integers(0, n - length + 1))
        audio = arrays["audio"][start * self.spf : (start + length) * self.spf]
        if len(audio) != length * self.spf:
            raise ValueError(f"utterance {index}: {len(arrays['audio'])} audio samples for {n} frames")
        item = {"audio": torch.from_numpy(np.array(audio, dtype=np.float32)),
                "spk": torch.from_numpy(self.source.conditioning[index])}
        if "video" in arrays:
            clip = arrays["video"][start : start + length]
            item["video"] = torch.from_numpy(np.array(clip.transpose(0, 3, 1, 2)))  # a copy: shard buffers are read-only
        return item


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` order (seeded by seed + epoch) that yields `(index, crop_seed)` and can
    skip the first `start` samples of this rank's epoch when a run resumes mid-epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.start :]
        return iter([(i, crop_seed(self.seed, self.epoch, i)) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


def write_synthetic_corpus(root: str | os.PathLike[str], splits: dict[str, Sequence[str]], utts_per_speaker: int = 4,
                           n_frames: int = 30, size: int = 24, channels: int = 1, samples_per_frame: int = 640,
                           seed: int = 0) -> tuple[Path, Path]:
    """Tiny roi + speaker shards in the stages' layout, for tests and benchmarks without the data stages.

    Each speaker has its own pitch and conditioning vector; the mouth region's brightness follows
    the audio envelope, so video and audio carry related information. Returns (roi_root, speakers_root).
    """
    from pipeline.shards import pack, shard_relpath, write_shard

    rng = np.random.default_rng(seed)
    roi_root, spk_root = Path(root) / "roi", Path(root) / "speakers"
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
    return roi_root, spk_root
