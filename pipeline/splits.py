"""Split protocols: which clips train, validate and test a model (`protocols:` in params.yaml).

A protocol places speakers in two ways:
- `per_speaker`: whole speakers go to one split (`train`, `val`, `test` or `unseen`), which is
  how speaker-disjoint protocols keep test voices out of training;
- `per_utterance`: each listed speaker's clips (or every remaining speaker's, with `all`) are
  divided between `train`, `val` and `test` by `fractions`; `hold_out: N` first moves N of those
  speakers, picked by the seed, whole to `unseen`.
Clips of the `unknown` speaker (a flat folder of unlabelled clips) are divided per utterance
when the protocol has `fractions`; a speaker-disjoint protocol cannot place them without
risking one voice in two splits, so they are rejected there. Any other speaker the protocol
does not name is rejected with a reason.

Assignment is a pure function of (seed, speaker, utt_id): clips are ranked by a hash of those,
so the result does not depend on file-system order, and adding or removing one speaker never
moves another speaker's clips.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import FrozenMap

SPLITS = ("train", "val", "test", "unseen")
UTTERANCE_SPLITS = ("train", "val", "test")
UNKNOWN_SPEAKER = "unknown"


@dataclass(frozen=True)
class ProtocolConfig:
    """One `protocols.<name>` block of params.yaml; a protocol uses only the keys it needs."""

    source: str  # where its speaker lists come from
    per_speaker: Mapping[Literal["train", "val", "test", "unseen"], tuple[str, ...]] = field(default_factory=FrozenMap)
    per_utterance: tuple[str, ...] | str = ()  # speakers, or `all`: every speaker not placed per speaker
    fractions: Mapping[Literal["train", "val", "test"], float] = field(default_factory=FrozenMap)
    hold_out: int = 0

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError("give a `source:` saying where its speaker lists come from")
        placed = _speaker_map(self.per_speaker)
        both = set(placed) & set(_listed(self.per_utterance) or ())
        if both:
            raise ValueError(f"speakers {sorted(both)} are both per_speaker and per_utterance")
        values = dict(self.fractions)
        if values and (min(values.values()) < 0 or not math.isclose(sum(values.values()), 1.0, abs_tol=1e-6)):
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {values}")
        if _listed(self.per_utterance) != () and not values:
            raise ValueError("per_utterance speakers need `fractions`")
        if self.hold_out < 0:
            raise ValueError(f"hold_out must be >= 0, got {self.hold_out}")


@dataclass(frozen=True)
class Protocol:
    """A named split protocol, resolved from its `ProtocolConfig` for `assign`."""

    name: str
    source: str
    per_speaker: dict[str, str]  # speaker -> split
    per_utterance: tuple[str, ...] | None  # None: every speaker not placed per speaker
    fractions: dict[str, float]
    hold_out: int

    @classmethod
    def from_config(cls, name: str, cfg: ProtocolConfig) -> Protocol:
        return cls(name, cfg.source, _speaker_map(cfg.per_speaker), _listed(cfg.per_utterance), dict(cfg.fractions),
                   cfg.hold_out)

    @classmethod
    def named(cls, protocols: Mapping[str, ProtocolConfig], name: str) -> Protocol:
        """Protocol `name` of the `protocols:` section; a `ValueError` lists the defined ones."""
        if name not in protocols:
            raise ValueError(f"split protocol {name!r} is not defined under `protocols:` (have: {', '.join(sorted(protocols))})")
        return cls.from_config(name, protocols[name])


@dataclass(frozen=True)
class Assignment:
    """The split of one clip, or why it has none."""

    split: str | None
    reason: str | None = None


def assign(clips: Sequence[tuple[str, str]], protocol: Protocol, seed: int) -> list[Assignment]:
    """Split for each `(utt_id, speaker)`, in input order."""
    by_speaker: dict[str, list[str]] = {}
    for utt_id, speaker in clips:
        by_speaker.setdefault(speaker, []).append(utt_id)
    placed: dict[str, Assignment] = {}
    divided = _per_utterance_speakers(by_speaker, protocol)
    held_out = set(sorted(divided, key=lambda s: _rank(seed, "hold_out", s))[: protocol.hold_out])
    if protocol.hold_out and len(held_out) >= len(divided):
        raise ValueError(
            f"protocol {protocol.name} holds out {protocol.hold_out} speaker(s) but only {len(divided)} "
            f"({', '.join(divided) or 'none'}) are present: nothing would be left to train on"
        )
    for speaker, utt_ids in sorted(by_speaker.items()):
        if speaker in protocol.per_speaker:
            placed.update((u, Assignment(protocol.per_speaker[speaker])) for u in utt_ids)
        elif speaker in held_out:
            placed.update((u, Assignment("unseen")) for u in utt_ids)
        elif speaker in divided or (speaker == UNKNOWN_SPEAKER and protocol.fractions):
            placed.update(_divide(utt_ids, speaker, protocol.fractions, seed))
        else:
            placed.update((u, Assignment(None, _not_placed(speaker, protocol))) for u in utt_ids)
    return [placed[utt_id] for utt_id, _ in clips]


def allocate(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Clip counts per split for `n` clips: largest remainder, at least one per split with a share when n allows."""
    exact = {s: n * fractions.get(s, 0.0) for s in UTTERANCE_SPLITS}
    counts = {s: math.floor(x) for s, x in exact.items()}
    by_remainder = sorted(UTTERANCE_SPLITS, key=lambda s: (-(exact[s] - counts[s]), UTTERANCE_SPLITS.index(s)))
    for s in by_remainder[: n - sum(counts.values())]:
        counts[s] += 1
    wanted = [s for s in UTTERANCE_SPLITS if fractions.get(s, 0.0) > 0]
    if n >= len(wanted):
        # A speaker with a handful of clips still gets a val and a test clip.
        for s in wanted:
            if counts[s] == 0:
                donor = max(UTTERANCE_SPLITS, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[s] += 1
    return counts


def _divide(utt_ids: Iterable[str], speaker: str, fractions: dict[str, float], seed: int) -> list[tuple[str, Assignment]]:
    ranked = sorted(utt_ids, key=lambda u: _rank(seed, speaker, u))
    counts = allocate(len(ranked), fractions)
    out, start = [], 0
    for split in UTTERANCE_SPLITS:
        out += [(u, Assignment(split)) for u in ranked[start : start + counts[split]]]
        start += counts[split]
    return out


def _per_utterance_speakers(by_speaker: dict[str, list[str]], protocol: Protocol) -> list[str]:
    present = sorted(s for s in by_speaker if s != UNKNOWN_SPEAKER and s not in protocol.per_speaker)
    if protocol.per_utterance is None:
        return present
    return [s for s in present if s in protocol.per_utterance]


def _not_placed(speaker: str, protocol: Protocol) -> str:
    if speaker == UNKNOWN_SPEAKER:
        return (
            f"speaker unknown: protocol {protocol.name} keeps speakers disjoint between splits and an "
            "unidentified talker's clips cannot be placed safely"
        )
    return f"speaker {speaker} is not in protocol {protocol.name}"


def _rank(seed: int, *parts: str) -> str:
    return hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).hexdigest()


def _listed(per_utterance: tuple[str, ...] | str) -> tuple[str, ...] | None:
    if per_utterance == "all":
        return None
    return (per_utterance,) if isinstance(per_utterance, str) else per_utterance


def _speaker_map(per_speaker: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for split, speakers in per_speaker.items():
        for speaker in speakers:
            if speaker in mapping:
                raise ValueError(f"speaker {speaker} is in both {mapping[speaker]} and {split}")
            mapping[speaker] = split
    return mapping
