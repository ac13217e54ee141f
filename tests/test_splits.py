"""Split protocols: the lists in params.yaml, fractions, held-out voices, determinism and stability."""
from __future__ import annotations

import dataclasses
import random
from collections import Counter

import paths
import pytest

from pipeline.config import ConfigError, Params, load_params, parse
from pipeline.splits import Protocol, ProtocolConfig, allocate, assign

PARAMS = Params(load_params(paths.PARAMS))
PROTOCOLS = {name: PARAMS.parse(f"protocols.{name}", ProtocolConfig) for name in PARAMS.raw("protocols")}


def named(name: str) -> Protocol:
    return Protocol.named(PROTOCOLS, name)
GRID_WITH_VIDEO = [f"s{i}" for i in range(1, 35) if i != 21]


def _clips(speakers, n):
    return [(f"{s}_{i:04d}", s) for s in speakers for i in range(n)]


def _splits(clips, protocol, seed=0):
    return {u: a.split for (u, _), a in zip(clips, assign(clips, protocol, seed))}


def test_allocate_matches_fractions_and_keeps_small_speakers_in_every_split():
    seen = {"train": 0.9, "val": 0.05, "test": 0.05}
    assert allocate(1000, seen) == {"train": 900, "val": 50, "test": 50}
    assert allocate(5, seen) == {"train": 3, "val": 1, "test": 1}
    assert allocate(2, seen) == {"train": 2, "val": 0, "test": 0}
    for n in range(0, 60):
        counts = allocate(n, {"train": 0.8, "val": 0.1, "test": 0.1})
        assert sum(counts.values()) == n and min(counts.values()) >= 0


def test_seen4_divides_each_speaker_and_rejects_others():
    protocol = named("seen-4")
    clips = _clips(["s1", "s2", "s4", "s29", "s5"], 1000)
    result = assign(clips, protocol, seed=0)
    per_speaker = Counter((speaker, a.split) for (_, speaker), a in zip(clips, result))
    for speaker in ("s1", "s2", "s4", "s29"):
        assert (per_speaker[speaker, "train"], per_speaker[speaker, "val"], per_speaker[speaker, "test"]) == (900, 50, 50)
    rejected = {a.reason for (_, s), a in zip(clips, result) if s == "s5"}
    assert rejected == {"speaker s5 is not in protocol seen-4"}


def test_assignment_ignores_input_order_and_other_speakers_but_follows_seed():
    protocol = named("seen-33")
    clips = _clips(["s1", "s2", "s3"], 200)
    base = _splits(clips, protocol)
    shuffled = clips[:]
    random.Random(1).shuffle(shuffled)
    assert _splits(shuffled, protocol) == base
    # Dropping s3 and adding s4 leaves every s1/s2 clip where it was.
    changed = _splits(_clips(["s1", "s2", "s4"], 200), protocol)
    assert {u: changed[u] for u in base if not u.startswith("s3")} == {u: s for u, s in base.items() if not u.startswith("s3")}
    assert _splits(clips, protocol, seed=1) != base


def test_unseen_protocol_is_speaker_disjoint_and_covers_grid():
    protocol = named("unseen")
    assert sorted(protocol.per_speaker, key=GRID_WITH_VIDEO.index) == GRID_WITH_VIDEO
    assert Counter(protocol.per_speaker.values()) == {"train": 16, "val": 7, "unseen": 10}
    clips = _clips(GRID_WITH_VIDEO, 20)
    splits = _splits(clips, protocol)
    by_speaker: dict[str, set[str]] = {}
    for (utt, speaker) in clips:
        by_speaker.setdefault(speaker, set()).add(splits[utt])
    assert all(len(s) == 1 for s in by_speaker.values())
    assert by_speaker["s2"] == {"unseen"} and by_speaker["s1"] == {"train"} and by_speaker["s9"] == {"val"}
    assert "test" not in set(splits.values())


def held_out(name: str) -> Protocol:
    """The named protocol with one seeded voice moved whole to `unseen`."""
    return dataclasses.replace(named(name), hold_out=1)


def test_the_demo_sees_every_voice():
    voices = ["alice", "bob", "carol", "dave"]
    clips = _clips(voices, 16)
    splits = _splits(clips, named("demo"), seed=3)
    assert all(Counter(splits[u] for u, s in clips if s == v) == {"train": 12, "val": 2, "test": 2} for v in voices)


def test_hold_out_moves_one_voice_whole_to_unseen():
    protocol = held_out("demo")
    voices = ["alice", "bob", "carol", "dave"]
    clips = _clips(voices, 16)
    splits = _splits(clips, protocol, seed=3)
    by_voice = {v: Counter(splits[u] for u, s in clips if s == v) for v in voices}
    held = [v for v, c in by_voice.items() if "unseen" in c]
    assert len(held) == 1 and by_voice[held[0]] == {"unseen": 16}
    for voice in set(voices) - set(held):
        assert by_voice[voice] == {"train": 12, "val": 2, "test": 2}
    assert _splits(list(reversed(clips)), protocol, seed=3) == splits
    held_by_seed = {seed: next(v for v in voices if _splits(clips, protocol, seed)[f"{v}_0000"] == "unseen") for seed in range(12)}
    assert len(set(held_by_seed.values())) > 1  # the seed, not the name order, picks the voice


def test_hold_out_needs_a_voice_left_to_train_on():
    with pytest.raises(ValueError, match="holds out 1 speaker.*only 1"):
        assign(_clips(["alice"], 5), held_out("demo"), seed=0)


def test_unknown_speaker_is_divided_in_seen_protocols_and_refused_in_speaker_disjoint_ones():
    clips = _clips(["unknown"], 5)
    assert Counter(_splits(clips, named("seen-4")).values()) == {"train": 3, "val": 1, "test": 1}
    refused = assign(clips, named("unseen"), seed=0)
    assert all(a.split is None and "unidentified talker" in a.reason for a in refused)


@pytest.mark.parametrize(
    "block, message",
    [
        ({"per_utterance": ["s1"], "fractions": {"train": 1.0}}, "missing key protocols.p.source"),
        ({"source": " ", "per_utterance": ["s1"], "fractions": {"train": 1.0}}, "give a `source:`"),
        ({"source": "x", "per_utterance": ["s1"], "fractions": {"train": 0.9, "val": 0.2}}, "sum to 1"),
        ({"source": "x", "per_utterance": ["s1"]}, "need `fractions`"),
        ({"source": "x", "per_speaker": {"tset": ["s1"]}}, "'tset' is not one of"),
        ({"source": "x", "per_speaker": {"train": ["s1"], "unseen": ["s1"]}}, "s1 is in both train and unseen"),
        ({"source": "x", "per_speaker": {"train": ["s1"]}, "per_utterance": ["s1"], "fractions": {"train": 1}}, "both per_speaker and per_utterance"),
        ({"source": "x", "speakers": ["s1"]}, "unknown key protocols.p.speakers"),
        ({"source": "x", "per_utterance": "all", "fractions": {"train": 0.5, "tset": 0.5}}, "'tset' is not one of"),
    ],
)
def test_protocol_errors_say_what_is_wrong(block, message):
    with pytest.raises(ConfigError, match=message):
        parse(ProtocolConfig, block, "protocols.p")


def test_unknown_protocol_lists_the_defined_ones():
    with pytest.raises(ValueError, match="'seen-5' is not defined.*seen-33, seen-4"):
        named("seen-5")
