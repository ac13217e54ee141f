"""GE2E speaker embeddings, and the conditioning embedding each utterance is synthesised with.

Each utterance gets its own embedding (`embedding`: resemblyzer's GE2E voice encoder, 256-d,
L2-normalised) and a `conditioning` embedding, the identity the models are given.

Leakage rule: an utterance's conditioning never comes from its own audio. Feeding a model the
embedding of the very audio it must reconstruct leaks the target into the input and inflates
every metric. So:
- for a speaker with TRAIN utterances, the conditioning is the re-normalised mean of that
  speaker's train embeddings, without the target itself when the target is a train utterance
  (rule `train_mean_excluding_target`; val/test targets use all of them, `train_mean`);
- for a speaker without train utterances (unseen speakers), it is the re-normalised mean of
  `speakers.references` other utterances of that speaker (rule `references`), chosen by a
  seeded hash of (seed, target, candidate): deterministic, different per target, never the
  target. These references are real audio of the unseen speaker, as an enrolment sample.
The means are sums over the other utterances alone (prefix + suffix sums in a fixed order), so
changing only a target's audio leaves its own conditioning bit-for-bit unchanged.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_dir, write_text
from pipeline.executor import Executor, Failure
from pipeline.features.stage import (
    Outcome,
    Result,
    Utterance,
    UttKey,
    index_roi,
    map_batches,
    per_utterance,
    write_aligned,
)
from pipeline.shards import pack

EMBED_DIM = 256
ENCODER_SAMPLE_RATE = 16000
TRAIN_RULES = ("train_mean_excluding_target", "train_mean")

_ENCODER: Any = None


@dataclass(frozen=True)
class SpeakersConfig:
    """The `speakers:` section of params.yaml."""

    references: int  # utterances averaged per target of a speaker without train utterances (never the target)

    def __post_init__(self) -> None:
        if self.references < 1:
            raise ValueError(f"speakers.references={self.references}: must be at least 1")


def voice_encoder() -> Any:
    """resemblyzer's pretrained GE2E `VoiceEncoder` (weights ship in its wheel), once per process."""
    global _ENCODER
    if _ENCODER is None:
        from resemblyzer import VoiceEncoder

        _ENCODER = VoiceEncoder(verbose=False)
    return _ENCODER


def embed(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """256-d L2-normalised GE2E embedding of a mono waveform at `sample_rate`."""
    from resemblyzer import preprocess_wav

    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0 or not np.isfinite(audio).all():
        raise ValueError("audio is empty or has non-finite samples")
    if not np.any(audio):
        raise ValueError("audio is silent (all zeros)")
    # preprocess_wav resamples to 16 kHz from `source_sr`, normalises the level and trims long silences.
    wav = preprocess_wav(audio, source_sr=sample_rate)
    if wav.size == 0:
        raise ValueError("no speech found by resemblyzer's voice-activity detector")
    vector = voice_encoder().embed_utterance(wav).astype(np.float32)
    if not np.isfinite(vector).all():
        raise ValueError("the voice encoder returned a non-finite embedding")
    return vector


def compile_features() -> None:
    """Compile the numba kernels of resemblyzer's mel spectrogram (librosa's) here, once, before any worker
    starts: workers compiling them at the same moment race on numba's on-disk cache (see
    `prosody.compile_pitch`)."""
    from resemblyzer.audio import wav_to_mel_spectrogram

    wav_to_mel_spectrogram(np.random.default_rng(0).standard_normal(ENCODER_SAMPLE_RATE).astype(np.float32))


def _embed_utterance(utt: Utterance) -> dict[str, Any]:
    return {"embedding": embed(utt.audio, utt.sample_rate)}


@dataclass(frozen=True)
class Conditioning:
    """An utterance's conditioning embedding, the rule that made it and the utterances averaged."""

    vector: np.ndarray
    rule: str
    references: tuple[str, ...]


def _normalised(total: np.ndarray) -> np.ndarray:
    return (total / np.linalg.norm(total)).astype(np.float32)


def _leave_one_out(vectors: np.ndarray) -> np.ndarray:
    """Row i: the sum of all rows but i, computed without ever adding row i (prefix + suffix)."""
    zero = np.zeros((1, vectors.shape[1]))
    prefix = np.concatenate([zero, np.cumsum(vectors, axis=0)[:-1]])
    suffix = np.concatenate([np.cumsum(vectors[::-1], axis=0)[::-1][1:], zero])
    return prefix + suffix


def _rank(seed: int, target: str, candidate: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{target}\0{candidate}".encode()).digest()


def conditioning(keys: Iterable[UttKey], embeddings: dict[str, np.ndarray], references: int,
                 seed: int) -> dict[str, Conditioning | str]:
    """Conditioning of every utterance of `keys` (or why it has none), by the module's leakage rule.

    `embeddings` holds the utterances whose own embedding succeeded; only those are averaged.
    """
    by_speaker: dict[str, list[UttKey]] = {}
    for key in keys:
        by_speaker.setdefault(key.speaker, []).append(key)
    out: dict[str, Conditioning | str] = {}
    for speaker, spk_keys in sorted(by_speaker.items()):
        train = sorted(k.utt_id for k in spk_keys if k.split == "train" and k.utt_id in embeddings)
        if train:
            vectors = np.stack([embeddings[u] for u in train]).astype(np.float64)
            loo = dict(zip(train, _leave_one_out(vectors)))
            everything = vectors.sum(axis=0)
            for key in spk_keys:
                if key.utt_id in loo:
                    out[key.utt_id] = (Conditioning(_normalised(loo[key.utt_id]), TRAIN_RULES[0], ()) if len(train) > 1
                                       else f"speaker {speaker} has no other train utterance to condition on")
                else:
                    out[key.utt_id] = Conditioning(_normalised(everything), TRAIN_RULES[1], ())
            continue
        pool = sorted(k.utt_id for k in spk_keys if k.utt_id in embeddings)
        for key in spk_keys:
            chosen = sorted((u for u in pool if u != key.utt_id), key=lambda u: _rank(seed, key.utt_id, u))[:references]
            if not chosen:
                out[key.utt_id] = f"speaker {speaker} has no train utterance and no other utterance to use as reference"
                continue
            refs = tuple(sorted(chosen))
            out[key.utt_id] = Conditioning(_normalised(np.sum([embeddings[u] for u in refs], axis=0, dtype=np.float64)),
                                           "references", refs)
    return out


def _rows(keys: list[UttKey], own: dict[str, Result], cond: dict[str, Conditioning | str]) -> Iterable[tuple[UttKey, Result]]:
    for key in keys:
        result, c = own[key.utt_id], cond[key.utt_id]
        if isinstance(result, Failure):
            yield key, result
        elif isinstance(c, str):
            yield key, Failure(c)
        else:
            yield key, {**pack("embedding", result["embedding"]), **pack("conditioning", c.vector),
                        "conditioning_rule": c.rule, "references": list(c.references)}


def run_speakers(cfg: SpeakersConfig, seed: int, executor: Executor, roi_root: str | Path, out_root: str | Path) -> Outcome:
    """Embed every utterance, derive leakage-free conditioning, write aligned shards and `speakers.json`."""
    keys = index_roi(roi_root)
    compile_features()
    own = {k.utt_id: r for k, r in map_batches(per_utterance(_embed_utterance), roi_root, keys, executor, desc="speakers")}
    embeddings = {u: r["embedding"] for u, r in own.items() if not isinstance(r, Failure)}
    cond = conditioning(keys, embeddings, cfg.references, seed)
    train_sets: dict[str, list[str]] = {}
    for k in keys:
        if k.split == "train" and k.utt_id in embeddings:
            train_sets.setdefault(k.speaker, []).append(k.utt_id)
    with atomic_dir(out_root) as tmp:
        outcome = write_aligned(tmp, _rows(keys, own, cond), "speakers")
        meta = {
            "encoder": "resemblyzer VoiceEncoder (GE2E, pretrained weights from its wheel)", "dim": EMBED_DIM,
            "encoder_sample_rate": ENCODER_SAMPLE_RATE,
            "columns": {"embedding": "the utterance's own embedding (never used to condition it)",
                        "conditioning": "the embedding the models are conditioned on (leakage-free)",
                        "conditioning_rule": "train_mean_excluding_target | train_mean | references",
                        "references": "utterances averaged, for rule `references`; for the train rules they are "
                                      "train_utterances[speaker] below, minus the target"},
            "references_per_unseen_target": cfg.references, "seed": seed,
            "train_utterances": {s: sorted(u) for s, u in sorted(train_sets.items())},
            **outcome.summary(),
        }
        write_text(Path(tmp) / "speakers.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return outcome
