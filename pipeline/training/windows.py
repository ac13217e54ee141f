"""Random fixed-length training windows of aligned streams, and the seeded, resumable data order.

`WindowDataset` cuts the same span of `T` video frames out of every timed stream it serves,
each at its own rate (video 1 per frame, audio 640 samples, mel/prosody 4, units 2), and adds
the per-utterance vectors (speaker conditioning). `ResumableSampler` decides the data order
from the seed and the epoch alone, and can start mid-epoch: that is what makes resumed runs exact.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from pipeline.streams import Source


def crop_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of one window's random offset: a function of (seed, epoch, utterance) only."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest(), "little")


class WindowDataset(Dataset):
    """Random `window_frames`-frame windows of the streams `keys` of `source`.

    Items are addressed by `(index, crop_seed)` pairs from `ResumableSampler`; a whole
    utterance (no crop) when `window_frames` is None. Image streams come channels-first
    (`video`: T, C, H, W uint8).
    """

    def __init__(self, source: Source, window_frames: int | None, keys: Sequence[str]):
        missing = [k for k in keys if k not in source.streams]
        if missing:
            raise ValueError(f"the source has no stream {missing}; it has {sorted(source.streams)}")
        self.source = source
        self.window = window_frames
        self.keys = tuple(keys)
        self.timed = [k for k in self.keys if source.streams[k].per_frame is not None]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        n = self.source.n_frames(index)
        arrays = self.source.read(index, self.timed)
        start, length = 0, n
        if self.window is not None:
            length = self.window
            start = int(np.random.default_rng(seed).integers(0, n - length + 1))
        item = {}
        for k in self.keys:
            stream = self.source.streams[k]
            if stream.per_frame is None:
                item[k] = torch.from_numpy(self.source.vectors[k][index])
                continue
            rate = stream.per_frame
            window = arrays[k][start * rate : (start + length) * rate]
            if len(window) != length * rate:
                raise ValueError(f"utterance {index}: {len(arrays[k])} {k} items for {n} frames ({rate} per frame)")
            if stream.image:
                window = window.transpose(0, 3, 1, 2)
            # a copy: shard buffers are read-only
            item[k] = torch.from_numpy(np.array(window, dtype=stream.dtype))
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
