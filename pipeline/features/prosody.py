"""Pitch (F0), voicing and energy per mel frame, with per-speaker statistics from TRAIN only.

Frames are the model's mel frames (`pipeline.audio.mel`): hop 160 at 16 kHz (100 Hz), frame k
centred on sample 160k, n_frames * 4 frames per utterance at 25 fps.
- F0: probabilistic YIN (`librosa.pyin`, Mauch & Dixon 2014) on the same centred hop grid,
  searching `prosody.fmin`..`prosody.fmax` Hz with `prosody.frame_length`-sample windows. A
  frame is `voiced` when pYIN's HMM says so and its energy is within `prosody.silence_db` of the
  utterance's loudest frame: on real GRID clips pYIN alone marks low-level background hum in
  the pauses as voiced at the bottom of its range. `f0` is in Hz, 0 on unvoiced frames.
- Energy: the L2 norm over mel bins of the linear-magnitude mel frame (magnitude, power 1,
  Slaney mel as the models use; exp of their log-mel, whose 1e-5 floor adds at most 1e-4), as
  FastSpeech 2 and Kim et al. 2023 define it.
- Statistics for normalisation, in `prosody.json`: per speaker with train utterances, and over
  the whole train split (`global`, for speakers unseen in training): mean and std of ln(F0)
  over voiced frames and of energy over all frames. No val/test/unseen audio enters them.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_dir, write_text
from pipeline.audio.mel import MelConfig, log_mel
from pipeline.executor import Executor, Failure
from pipeline.features.stage import (
    Outcome,
    Result,
    Utterance,
    UttKey,
    fit_frames,
    index_roi,
    map_batches,
    per_utterance,
    write_aligned,
)
from pipeline.shards import pack, unpack


@dataclass(frozen=True)
class ProsodyConfig:
    """The `prosody:` section of params.yaml: pYIN's search range and window, and the silence gate."""

    fmin: float  # pYIN F0 search range, Hz
    fmax: float
    frame_length: int  # pYIN window in samples at audio.sample_rate
    silence_db: float  # frames this far below the utterance's loudest mel frame are unvoiced


def energy(audio: np.ndarray, mel: MelConfig) -> np.ndarray:
    """L2 norm of each linear-magnitude mel frame."""
    return np.linalg.norm(np.exp(log_mel(audio, mel).astype(np.float64)), axis=0).astype(np.float32)


def pitch(audio: np.ndarray, frame_energy: np.ndarray, mel: MelConfig, cfg: ProsodyConfig) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz with 0 when unvoiced, voiced flags) per mel frame of audio at `mel.sample_rate`."""
    import librosa

    f0, voiced, _ = librosa.pyin(audio, fmin=cfg.fmin, fmax=cfg.fmax, sr=mel.sample_rate, frame_length=cfg.frame_length,
                                 hop_length=mel.hop_length, center=True, fill_na=0.0)
    n = len(frame_energy)  # pyin's centred grid has one frame more than the mel's
    loud = frame_energy > frame_energy.max() * 10.0 ** (-cfg.silence_db / 20.0)
    voiced = voiced[:n] & loud
    return np.where(voiced, f0[:n], 0.0).astype(np.float32), voiced


def compile_pitch(mel: MelConfig, cfg: ProsodyConfig) -> None:
    """Compile pyin's numba kernels here, once, before any worker starts.

    numba compiles them on first use (about 25 s) and caches them beside librosa. Workers compiling at
    the same moment (a forked pool starts them together) raced on that cache and left it corrupt: every
    later run segfaulted in the workers. Compiled here, the workers inherit or load them.
    """
    audio = np.random.default_rng(0).standard_normal(mel.sample_rate // 2).astype(np.float32)  # float32, as roi audio
    pitch(audio, energy(audio, mel), mel, cfg)


def prosody(utt: Utterance, mel: MelConfig, cfg: ProsodyConfig) -> dict[str, Any]:
    """`f0`, `voiced` and `energy` columns of one utterance, n_frames x mel frames per video frame long."""
    audio = utt.audio_at(mel.sample_rate)
    n = utt.key.n_frames * mel.frames_per_video_frame(utt.key.fps)
    e = energy(audio, mel)
    f0, voiced = pitch(audio, e, mel, cfg)
    return {**pack("f0", fit_frames(f0, n)), **pack("voiced", fit_frames(voiced, n)), **pack("energy", fit_frames(e, n))}


class RunningStats:
    """Count, mean and variance of a stream of arrays (Chan et al.'s parallel update, float64)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return
        n, mean = x.size, float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    @property
    def std(self) -> float:
        return (self.m2 / self.n) ** 0.5 if self.n else 0.0


class SpeakerStats:
    """ln(F0) over voiced frames and energy over all frames, per speaker and over all speakers."""

    def __init__(self) -> None:
        self.speakers: dict[str, tuple[RunningStats, RunningStats]] = {}
        self.overall = (RunningStats(), RunningStats())

    def add(self, speaker: str, f0: np.ndarray, voiced: np.ndarray, energy: np.ndarray) -> None:
        log_f0 = np.log(f0[voiced & (f0 > 0)].astype(np.float64))
        for log_f0_stats, energy_stats in (self.speakers.setdefault(speaker, (RunningStats(), RunningStats())), self.overall):
            log_f0_stats.add(log_f0)
            energy_stats.add(energy)

    def to_dict(self) -> dict[str, Any]:
        def entry(pair: tuple[RunningStats, RunningStats]) -> dict[str, float]:
            f, e = pair
            return {"log_f0_mean": f.mean, "log_f0_std": f.std, "voiced_frames": f.n,
                    "energy_mean": e.mean, "energy_std": e.std, "frames": e.n}

        return {"global": entry(self.overall), "speakers": {s: entry(p) for s, p in sorted(self.speakers.items())}}


def _collect_train(results: Iterable[tuple[UttKey, Result]], stats: SpeakerStats) -> Iterator[tuple[UttKey, Result]]:
    for key, result in results:
        if key.split == "train" and not isinstance(result, Failure):
            stats.add(key.speaker, unpack(result, "f0"), unpack(result, "voiced"), unpack(result, "energy"))
        yield key, result


def run_prosody(mel: MelConfig, cfg: ProsodyConfig, executor: Executor, roi_root: str | Path, out_root: str | Path) -> Outcome:
    """F0, voicing and energy of every utterance in aligned shards, plus train statistics in `prosody.json`."""
    keys = index_roi(roi_root)
    compile_pitch(mel, cfg)
    task = per_utterance(functools.partial(prosody, mel=mel, cfg=cfg))
    stats = SpeakerStats()
    with atomic_dir(out_root) as tmp:
        outcome = write_aligned(tmp, _collect_train(map_batches(task, roi_root, keys, executor, desc="prosody"), stats), "prosody")
        meta = {
            "f0": {"method": "librosa.pyin", "unit": "Hz, 0 when unvoiced", **asdict(cfg)},
            "energy": "L2 norm over mel bins of the linear-magnitude (power 1) mel frame",
            "frame_rate_hz": mel.sample_rate / mel.hop_length, "mel": asdict(mel),
            "frames_per_video_frame": {f"{fps:g}": mel.sample_rate / fps / mel.hop_length for fps in sorted({k.fps for k in keys})},
            "stats": {"split": "train", "log": "natural", **stats.to_dict()},
            **outcome.summary(),
        }
        write_text(Path(tmp) / "prosody.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return outcome


def train_statistics(prosody_dir: str | Path) -> dict[str, float]:
    """The whole train split's ln(F0) (voiced frames) and energy mean and std, from the stage's `prosody.json`."""
    path = Path(prosody_dir) / "prosody.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run the prosody stage first")
    stats = json.loads(path.read_text(encoding="utf-8"))["stats"]["global"]
    if not stats["voiced_frames"]:
        raise ValueError(f"{path}: no voiced train frames, so no ln(F0) statistics to normalise pitch with")
    return {k: float(stats[k]) for k in ("log_f0_mean", "log_f0_std", "energy_mean", "energy_std")}
