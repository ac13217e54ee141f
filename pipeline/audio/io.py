"""Reading, writing and resampling audio (soundfile: torchaudio's own I/O needs torchcodec)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.atomic import atomic_path


def resample(audio: np.ndarray, source_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling of a mono float signal; a no-op when the rates match."""
    if source_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # imported here: it costs every worker process ~1 s

    g = gcd(int(source_sr), int(target_sr))
    return resample_poly(audio, target_sr // g, source_sr // g).astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels of a (samples, channels) array into float32 mono."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def read_audio(path: str | os.PathLike[str], sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 audio from a sound file, resampled to `sample_rate` when given."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    data = to_mono(data)
    if sample_rate is not None and sr != sample_rate:
        return resample(data, sr, sample_rate), sample_rate
    return data, sr


def write_wav(path: str | os.PathLike[str], audio: np.ndarray | Iterable[np.ndarray], sample_rate: int) -> Path:
    """Write 16-bit PCM wav atomically (clipped to [-1, 1]): one array, or its consecutive blocks (a long
    recording is then never whole in memory)."""
    blocks = [audio] if isinstance(audio, np.ndarray) else audio
    with atomic_path(path) as tmp, sf.SoundFile(str(tmp), "w", sample_rate, 1, subtype="PCM_16", format="WAV") as out:
        for block in blocks:
            out.write(np.clip(np.asarray(block, dtype=np.float32), -1.0, 1.0))
    return Path(path)


def fit_length(audio: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """Cut or zero-pad `audio` to `length` samples; also return samples added (negative: cut)."""
    diff = length - len(audio)
    if diff > 0:
        audio = np.concatenate([audio, np.zeros(diff, dtype=audio.dtype)])
    return audio[:length], diff


def read_media_audio(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """Mono float32 audio of any file ffmpeg reads (a video container too), at `sample_rate`.

    ffmpeg does the down-mix and resampling, so a clip's audio is the same whether it is read
    here, by the roi stage or by `v2s embed`.
    """
    import subprocess

    from pipeline.video.probe import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", os.fspath(path), "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"cannot read audio from {path}: {reason[-1] if reason else 'ffmpeg failed'}")
    audio = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if audio.size == 0:
        raise RuntimeError(f"no audio stream in {path}")
    return audio
