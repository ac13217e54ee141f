"""Shards in the roi stage's layout (docs/DATA.md) for the feature tests: real GRID audio or given signals."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import paths
import pytest
import torch

from pipeline.audio.io import read_media_audio
from pipeline.shards import pack, plan_shards, write_shard

GRID = paths.GRID
GRID_CLIPS = ("bbaf2n", "brbk7n", "lbax4n", "lbbc2a", "lrwp9a")  # five different talkers
SR = 16000
FPS = 25
SPF = SR // FPS  # audio samples per video frame


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run torch on one thread: on a CPU shared with other jobs, two threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grid_audio(name: str) -> np.ndarray:
    """16 kHz mono audio of a real GRID clip; skips the test when the clips are absent."""
    path = GRID / f"{name}.mpg"
    if not path.is_file():
        paths.missing_grid()
    return read_media_audio(path, SR)


def write_roi(root: Path, utts: Sequence[tuple[str, str, str, np.ndarray]], max_rows: int = 3) -> Path:
    """Write `(utt_id, speaker, split, audio)` as roi shards under `root`; return `root`.

    Audio is cut to whole video frames, as roi does; the video is a small gray crop per frame.
    """
    by_id = {u[0]: u for u in utts}
    plan = plan_shards(((split, spk, utt) for utt, spk, split, _ in utts), max_rows)
    for rel, ids in plan.items():
        rows = []
        for utt in ids:
            _, spk, split, audio = by_id[utt]
            n = len(audio) // SPF
            video = np.full((n, 8, 8, 1), len(rows), dtype=np.uint8)
            rows.append({"utt_id": utt, "speaker": spk, "split": split, "transcript": "", "n_frames": n, "fps": float(FPS),
                         **pack("video", video), **pack("audio", np.asarray(audio[: n * SPF], dtype=np.float32)),
                         "sample_rate": SR, "audio_pad": 0, "missing_frames": 0})
        write_shard(root / rel, rows)
    return root


def tone(f0: float, seconds: float, amplitude: float = 0.3, harmonics: int = 8) -> np.ndarray:
    """A harmonic complex at `f0` Hz (a steady voiced sound), 16 kHz."""
    t = np.arange(round(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, harmonics + 1))
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


def babble(seed: int, seconds: float) -> np.ndarray:
    """Seeded speech-like sound: 100-300 ms voiced segments at random pitch, noise bursts and pauses."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < seconds * SR:
        kind, dur = rng.integers(3), rng.uniform(0.1, 0.3)
        if kind == 0:
            part = tone(rng.uniform(90, 260), dur, rng.uniform(0.1, 0.5), int(rng.integers(2, 12)))
        elif kind == 1:
            part = (rng.uniform(0.02, 0.2) * rng.standard_normal(round(dur * SR))).astype(np.float32)
        else:
            part = np.zeros(round(dur * SR), np.float32)
        parts.append(part)
        total += len(part)
    return np.concatenate(parts)[: round(seconds * SR)]
