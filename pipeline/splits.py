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
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

SPLITS = ("train", "val", "test", "unseen")
UTTERANCE_SPLITS = ("train", "val", "test")
UNKNOWN_SPEAKER = "unknown"
_KEYS = {"source", "per_speaker", "per_utterance", "fractions", "hold_out"}


@dataclass(frozen=True)
class Protocol:
    """A named split protocol, validated from its `protocols.<name>` block."""

    name: str
    source: str
    per_speaker: dict[str, str] = field(default_factory=dict)
    per_utterance: tuple[str, ...] | None = ()  # None: every speaker not placed per speaker
    fractions: dict[str, float] = field(default_factory=dict)
    hold_out: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any], name: str) -> "Protocol":
        """Read and check `protocols.<name>`; a `ValueError` says what is wrong."""
        protocols = params.get("protocols") or {}
        if name not in protocols:
            raise ValueError(f"split protocol {name!r} is not defined under `protocols:` (have: {', '.join(sorted(protocols))})")
        block = protocols[name] or {}
        unknown = set(block) - _KEYS
        if unknown:
            raise ValueError(f"protocol {name}: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
        if not str(block.get("source") or "").strip():
            raise ValueError(f"protocol {name}: give a `source:` saying where its speaker lists come from")
        per_speaker = _speaker_map(name, block.get("per_speaker") or {})
        listed = block.get("per_utterance") or ()
        per_utterance = None if listed == "all" else tuple(str(s) for s in ([listed] if isinstance(listed, str) else listed))
        both = set(per_speaker) & set(per_utterance or ())
        if both:
            raise ValueError(f"protocol {name}: speakers {sorted(both)} are both per_speaker and per_utterance")
        fractions = _fractions(name, block.get("fractions") or {})
        if (per_utterance is None or per_utterance) and not fractions:
            raise ValueError(f"protocol {name}: per_utterance speakers need `fractions`")
        hold_out = int(block.get("hold_out") or 0)
        if hold_out < 0:
            raise ValueError(f"protocol {name}: hold_out must be >= 0, got {hold_out}")
        return cls(name, str(block["source"]), per_speaker, per_utterance, fractions, hold_out)


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


def _speaker_map(name: str, per_speaker: dict[str, Any]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for split, speakers in per_speaker.items():
        if split not in SPLITS:
            raise ValueError(f"protocol {name}: per_speaker split {split!r} is not one of {SPLITS}")
        for speaker in speakers or ():
            if speaker in mapping:
                raise ValueError(f"protocol {name}: speaker {speaker} is in both {mapping[speaker]} and {split}")
            mapping[str(speaker)] = split
    return mapping


def _fractions(name: str, fractions: dict[str, Any]) -> dict[str, float]:
    bad = set(fractions) - set(UTTERANCE_SPLITS)
    if bad:
        raise ValueError(f"protocol {name}: fractions are for {UTTERANCE_SPLITS}, not {sorted(bad)}")
    values = {s: float(v) for s, v in fractions.items()}
    if values and (min(values.values()) < 0 or not math.isclose(sum(values.values()), 1.0, abs_tol=1e-6)):
        raise ValueError(f"protocol {name}: fractions must be >= 0 and sum to 1, got {values}")
    return values
