"""Per-utterance data streams joined by shard path: what training and synthesis read.

Every stage that writes per-utterance data mirrors the roi shards: the same relative paths
and the same row order (docs/DATA.md). A `Stream` is one packed array column of such a
directory with its rate: items per video frame along its first axis (video 1, audio 640 at
16 kHz and 25 fps, mel and prosody 4, units 2), or None for one vector per utterance (the
speaker conditioning). `StreamSource` indexes the utterances of the roi shards of some
splits and reads any set of streams of one utterance, joined by shard path and checked by
`utt_id`; an utterance whose row in a stream is a failure (null arrays) is left out.

Speaker conditioning follows one rule everywhere: the speakers stage's
`pipeline.features.speakers.conditioning`, never the target's own audio. Roi utterances read
the `conditioning` column that stage wrote; `AudioDirSource` (local audio-only corpora for
pre-training) applies the same function to its own files.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow.parquet as pq

from pipeline.audio.io import read_audio
from pipeline.audio.mel import AudioConfig
from pipeline.features.hubert import FRAME_RATE as UNIT_RATE
from pipeline.layout import Layout
from pipeline.shards import ShardReader, list_shards, unpack

EMBED_DIM = 256
AUDIO_EXTENSIONS = (".wav", ".flac")


@dataclass(frozen=True)
class Stream:
    """One packed array column of a directory of shards aligned with the roi shards."""

    key: str  # the name batches and model cards use: video, audio, spk, units, f0, ...
    root: Path  # holds <split>/<speaker>-NNN.parquet
    column: str  # the packed array column of those shards
    per_frame: int | None  # items per video frame along the first axis; None: one array per utterance
    missing: str  # what an utterance lacks when its row is a failure (skip counts, messages)
    dtype: str | None = None  # cast to this on reading (None: as stored)
    image: bool = False  # (T, H, W, C) frames, handed to models channels-first as (T, C, H, W)


def frame_rates(audio: AudioConfig) -> dict[str, int]:
    """Items per video frame of each timed quantity under `audio`'s rates."""
    spf = audio.sample_rate // audio.fps
    if spf * audio.fps != audio.sample_rate:
        raise ValueError(f"audio.sample_rate {audio.sample_rate} is not a whole number of samples per frame at {audio.fps} fps")
    rates = {"video": 1, "audio": spf, "mel": audio.mel.frames_per_video_frame(audio.fps)}
    units = UNIT_RATE / audio.fps
    if units == int(units):  # otherwise units do not tile video frames and are not offered
        rates["units"] = int(units)
    return rates


class Catalog:
    """The streams of the pipeline's stages under one layout, by key."""

    def __init__(self, layout: Layout, audio: AudioConfig):
        self.layout = layout
        rates = frame_rates(audio)
        roi = layout.roi / "shards"
        prosody = layout.features("prosody")
        streams = [
            Stream("video", roi, "video", 1, "video", image=True),
            Stream("audio", roi, "audio", rates["audio"], "audio", dtype="float32"),
            Stream("spk", layout.speakers, "conditioning", None, "conditioning", dtype="float32"),
            Stream("f0", prosody, "f0", rates["mel"], "prosody", dtype="float32"),
            Stream("voiced", prosody, "voiced", rates["mel"], "prosody"),
            Stream("energy", prosody, "energy", rates["mel"], "prosody", dtype="float32"),
        ]
        if "units" in rates:
            streams.append(Stream("units", layout.features("units"), "units", rates["units"], "units"))
        self._streams = {s.key: s for s in streams}
        self.samples_per_frame = rates["audio"]

    def __getitem__(self, key: str) -> Stream:
        if key not in self._streams:
            raise KeyError(f"no stream {key!r}; streams are {sorted(self._streams)} and synth(<system>)")
        return self._streams[key]

    def get(self, *keys: str) -> tuple[Stream, ...]:
        return tuple(self[k] for k in keys)

    def synth(self, system: str, key: str = "synth") -> Stream:
        """The audio another model synthesised (`data/synth/<system>/`), under batch key `key`."""
        return Stream(key, self.layout.synth(system), "audio", self.samples_per_frame, f"synthesis of {system}",
                      dtype="float32")


@dataclass(frozen=True)
class Utterance:
    """Where one utterance lives and how long it is (in video frames)."""

    utt_id: str
    speaker: str
    split: str
    shard: str
    row: int
    n_frames: int


def _rows(path: Path, columns: Sequence[str], utt_ids: Sequence[str]) -> list[dict[str, Any]]:
    """`columns` of every row of shard `path`, checked row by row against the roi shard's `utt_ids`."""
    if not path.is_file():
        raise FileNotFoundError(f"shard missing: {path}")
    rows = pq.read_table(path, columns=["utt_id", *columns]).to_pylist()
    if [r["utt_id"] for r in rows] != list(utt_ids):
        raise ValueError(f"{path}: utterances differ from its roi shard (the stages are out of sync)")
    return rows


def read_vectors(stream: Stream, rel: str, utt_ids: Sequence[str]) -> list[np.ndarray | None]:
    """The per-utterance arrays of `stream` in shard `rel`, checked against the roi shard's
    `utt_ids`; None where the stage recorded a failure for the utterance."""
    path = stream.root / rel
    names = pq.read_schema(path).names if path.is_file() else []
    cols = [c for c in names if c.startswith(f"{stream.column}_") or c == stream.column]
    out: list[np.ndarray | None] = []
    for r in _rows(path, cols, utt_ids):
        if r.get(stream.column) is None:
            out.append(None)
        else:
            a = unpack(r, stream.column)
            out.append((a.astype(stream.dtype) if stream.dtype else a).reshape(-1))
    return out


def _present(stream: Stream, rel: str, utt_ids: Sequence[str]) -> list[bool]:
    """Whether each row of `stream`'s shard `rel` holds the array (a failed row holds nulls)."""
    return [r[f"{stream.column}_shape"] is not None for r in _rows(stream.root / rel, [f"{stream.column}_shape"], utt_ids)]


class Source(Protocol):
    """An index of utterances whose streams can be read one utterance at a time."""

    streams: dict[str, Stream]
    vectors: dict[str, np.ndarray]  # per-utterance streams, stacked in index order

    def __len__(self) -> int: ...

    def n_frames(self, i: int) -> int: ...

    def read(self, i: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Whole-utterance arrays of the timed streams `keys` of utterance `i`."""


class StreamSource:
    """Utterances of the roi shards of `splits` with `streams` joined by shard path.

    Per-utterance streams (the speaker conditioning) are read once, here; timed streams are
    read utterance by utterance. Utterances shorter than `min_frames` or lacking a stream are
    left out (counted in `skipped`).
    """

    def __init__(self, roi_shards: str | os.PathLike[str], streams: Sequence[Stream], splits: Sequence[str],
                 min_frames: int = 1, cache_bytes: int = 0):
        self.roi_root = Path(roi_shards)
        # Decoded utterances kept in memory (least recently read dropped first): a training step
        # otherwise spends about a fifth of its time decompressing row groups it has read before.
        self._cache: OrderedDict[tuple[int, tuple[str, ...]], dict[str, np.ndarray]] = OrderedDict()
        self._cache_bytes, self._cache_max = 0, cache_bytes
        self.streams = {s.key: s for s in streams}
        outside = [s for s in streams if s.root != self.roi_root]
        self.utts: list[Utterance] = []
        self.skipped: dict[str, int] = {"too_short": 0, **{f"no_{s.missing}": 0 for s in outside}}
        fixed: dict[str, list[np.ndarray]] = {s.key: [] for s in streams if s.per_frame is None}
        for split in splits:
            for path in list_shards(self.roi_root / split):
                rel = path.relative_to(self.roi_root).as_posix()
                meta = pq.read_table(path, columns=["utt_id", "speaker", "n_frames"]).to_pylist()
                ids = [m["utt_id"] for m in meta]
                vectors = {s.key: read_vectors(s, rel, ids) for s in streams if s.per_frame is None}
                has = {s.key: [v is not None for v in vectors[s.key]] if s.per_frame is None else _present(s, rel, ids)
                       for s in outside}
                for row, m in enumerate(meta):
                    lacking = next((s for s in outside if not has[s.key][row]), None)
                    if lacking is not None:
                        self.skipped[f"no_{lacking.missing}"] += 1
                        continue
                    if m["n_frames"] < min_frames:
                        self.skipped["too_short"] += 1
                        continue
                    self.utts.append(Utterance(m["utt_id"], m["speaker"], split, rel, row, int(m["n_frames"])))
                    for key in fixed:
                        fixed[key].append(vectors[key][row])  # type: ignore[arg-type]
        self.vectors = {k: np.stack(v) if v else np.zeros((0, EMBED_DIM), np.float32) for k, v in fixed.items()}
        self._readers: dict[tuple[Path, str], ShardReader] = {}

    def __len__(self) -> int:
        return len(self.utts)

    def __getstate__(self) -> dict[str, Any]:
        # Open Parquet files do not pickle; DataLoader workers reopen their own.
        return {**self.__dict__, "_readers": {}, "_cache": OrderedDict(), "_cache_bytes": 0}

    @property
    def conditioning(self) -> np.ndarray:
        """The speaker conditioning vectors, one row per utterance."""
        return self.vectors["spk"]

    def _reader(self, root: Path, shard: str) -> ShardReader:
        if (root, shard) not in self._readers:
            self._readers[(root, shard)] = ShardReader(root / shard)
        return self._readers[(root, shard)]

    def n_frames(self, i: int) -> int:
        return self.utts[i].n_frames

    def read(self, i: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Arrays `keys` (e.g. `video` T x H x W x C uint8, `audio` float32) of utterance `i`."""
        key = (i, tuple(keys))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        out = self._read(i, keys)
        size = sum(a.nbytes for a in out.values())
        if size <= self._cache_max:
            while self._cache_bytes + size > self._cache_max:
                self._cache_bytes -= sum(a.nbytes for a in self._cache.popitem(last=False)[1].values())
            self._cache[key] = out
            self._cache_bytes += size
        return out

    def _read(self, i: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        u = self.utts[i]
        by_root: dict[Path, list[Stream]] = {}
        for key in keys:
            s = self.streams[key]
            by_root.setdefault(s.root, []).append(s)
        out: dict[str, np.ndarray] = {}
        for root, group in by_root.items():
            row = self._reader(root, u.shard).read(u.row, columns=["utt_id", *(s.column for s in group)])
            if row["utt_id"] != u.utt_id:
                raise ValueError(f"{root / u.shard} row {u.row} is {row['utt_id']}, expected {u.utt_id}")
            out.update({s.key: unpack(row, s.column) for s in group})
        return out


class _Key(NamedTuple):
    utt_id: str
    speaker: str
    split: str


class AudioDirSource:
    """Audio-only corpus in a local directory (LibriTTS, VCTK, ...): `<root>/<speaker>/.../*.wav|flac`.

    Audio is resampled to `sample_rate`. Each file's conditioning comes from the speakers
    stage's rule for speakers without train utterances: the normalised mean GE2E embedding of
    `references` other files of its speaker, chosen by a seeded hash, never its own audio.
    The pool embedded per speaker is its first `references + 1` files; a file whose speaker
    offers no other usable file is left out. Computed once and cached in `cache_dir`.
    """

    def __init__(self, root: str | os.PathLike[str], sample_rate: int, samples_per_frame: int, min_frames: int,
                 cache_dir: str | os.PathLike[str], references: int, seed: int):
        import soundfile as sf

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"pre-training corpus directory not found: {self.root}")
        self.sample_rate = sample_rate
        files, frames = [], []
        for f in sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
            info = sf.info(str(f))
            n = int(info.frames * sample_rate / info.samplerate) // samples_per_frame
            if n >= min_frames:
                files.append(f)
                frames.append(n)
        if not files:
            raise ValueError(f"no audio files of at least {min_frames} frames under {self.root}")
        vectors = self._conditioning(files, Path(cache_dir), references, seed)
        usable = [i for i in range(len(files)) if np.isfinite(vectors[i]).all()]
        self.skipped = {"no_conditioning": len(files) - len(usable)}
        self.files = [files[i] for i in usable]
        self.frames = [frames[i] for i in usable]
        self.speakers = [f.relative_to(self.root).parts[0] for f in self.files]
        self.vectors = {"spk": vectors[usable]}
        self.streams = {"audio": Stream("audio", self.root, "audio", samples_per_frame, "audio", dtype="float32"),
                        "spk": Stream("spk", self.root, "conditioning", None, "conditioning", dtype="float32")}

    def _conditioning(self, files: list[Path], cache_dir: Path, references: int, seed: int) -> np.ndarray:
        """One conditioning vector per file (NaN where it has none)."""
        key = hashlib.sha256("\n".join(str(f) for f in files).encode() + f"{references}:{seed}".encode()).hexdigest()[:16]
        cache = cache_dir / f"speakers-{key}.npy"
        if cache.is_file():
            return np.load(cache)
        from pipeline.atomic import atomic_path
        from pipeline.features.speakers import conditioning, embed

        keys = [_Key(str(f.relative_to(self.root)), f.relative_to(self.root).parts[0], "pretrain") for f in files]
        pool: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            pool.setdefault(k.speaker, []).append(i)
        embeddings = {}
        for members in pool.values():
            for i in members[: references + 1]:
                try:
                    embeddings[keys[i].utt_id] = embed(read_audio(files[i], self.sample_rate)[0], self.sample_rate)
                except ValueError:  # no speech found: not a usable reference
                    continue
        rule = conditioning(keys, embeddings, references, seed)  # type: ignore[arg-type]
        out = np.full((len(files), EMBED_DIM), np.nan, np.float32)
        for i, k in enumerate(keys):
            c = rule[k.utt_id]
            if not isinstance(c, str):
                out[i] = c.vector
        with atomic_path(cache) as tmp:
            np.save(tmp, out)
        return out

    def __len__(self) -> int:
        return len(self.files)

    @property
    def conditioning(self) -> np.ndarray:
        return self.vectors["spk"]

    def n_frames(self, i: int) -> int:
        return self.frames[i]

    def read(self, i: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        if set(keys) - {"audio"}:
            raise ValueError(f"{self.root} is audio-only; cannot read {sorted(set(keys) - {'audio'})}")
        return {"audio": read_audio(self.files[i], self.sample_rate)[0]}


class ConcatSource:
    """Several sources as one index (e.g. the corpus's own audio plus LibriTTS)."""

    def __init__(self, sources: Sequence[Any]):
        self.sources = list(sources)
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources]).tolist()
        keys = set.intersection(*(set(s.streams) for s in self.sources)) if self.sources else set()
        self.streams = {k: self.sources[0].streams[k] for k in self.sources[0].streams if k in keys} if self.sources else {}
        fixed = [k for k, s in self.streams.items() if s.per_frame is None]
        self.vectors = {k: np.concatenate([s.vectors[k] for s in self.sources]) for k in fixed}

    def __len__(self) -> int:
        return self._offsets[-1]

    @property
    def conditioning(self) -> np.ndarray:
        return self.vectors["spk"]

    def _locate(self, i: int) -> tuple[Any, int]:
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return self.sources[k], i - self._offsets[k]

    def n_frames(self, i: int) -> int:
        s, j = self._locate(i)
        return s.n_frames(j)

    def read(self, i: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        s, j = self._locate(i)
        return s.read(j, keys)
