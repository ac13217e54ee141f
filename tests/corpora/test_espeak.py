"""espeak-ng through ctypes: audio, word and phoneme timings, determinism, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.corpora import espeak
from pipeline.corpora.espeak import EspeakError, Voice, synthesize

WORDS = ["bin", "blue", "at", "f", "two", "now"]
MALE = Voice("en+m3", rate=165, pitch=40, range=50)


@pytest.fixture(scope="module")
def speech() -> espeak.Speech:
    return synthesize(WORDS, MALE)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_synthesis_returns_speech_audio(speech):
    assert speech.sample_rate == espeak.SAMPLE_RATE == 22050
    assert speech.audio.dtype == np.float32
    assert 0.8 < len(speech.audio) / speech.sample_rate < 2.5  # six short words
    assert 0.05 < np.abs(speech.audio).max() <= 1.0
    assert _rms(speech.audio) > 0.02


def test_word_events_are_in_order_and_cover_the_audio(speech):
    assert [w.label for w in speech.words] == WORDS
    starts = [w.start for w in speech.words]
    assert starts == sorted(set(starts)), "word starts must strictly increase"
    for word, following in zip(speech.words, speech.words[1:]):
        assert word.end == following.start  # contiguous, like GRID alignments
    n = len(speech.audio)
    assert speech.words[0].start < 0.05 * speech.sample_rate
    assert n - 0.2 * speech.sample_rate <= speech.words[-1].end <= n
    # Each word span holds speech, not silence.
    for word in speech.words:
        assert _rms(speech.audio[word.start : word.end]) > 0.01, word


def test_phoneme_events_tile_the_utterance(speech):
    labels = [p.label for p in speech.phonemes]
    assert labels[:3] == ["b", "'I", "n"]  # "bin"
    assert "'u:" in labels  # "blue", "two"
    bounds = [p.start for p in speech.phonemes] + [speech.phonemes[-1].end]
    assert bounds == sorted(bounds) and bounds[-1] == len(speech.audio)


def test_same_input_gives_identical_audio_after_other_utterances():
    # libespeak-ng carries state between utterances; each synthesis must start afresh.
    first = synthesize(["set", "red"], Voice("en+f2"), seed=3)
    synthesize(["lay", "green", "by"], MALE, seed=5)
    again = synthesize(["set", "red"], Voice("en+f2"), seed=3)
    assert np.array_equal(first.audio, again.audio)
    assert first.words == again.words and first.phonemes == again.phonemes


def test_voice_settings_change_the_speech():
    slow = synthesize(WORDS, Voice("en+m3", rate=130))
    fast = synthesize(WORDS, Voice("en+m3", rate=220))
    assert len(fast.audio) < 0.8 * len(slow.audio)
    female = synthesize(WORDS, Voice("en+f2"))
    assert not np.array_equal(female.audio[: len(slow.audio)], slow.audio[: len(female.audio)])


def test_phoneme_input_speaks_a_letter_name():
    # A lone "a" is read as the article and merged with the next word; [[...]] gives the letter.
    with pytest.raises(EspeakError, match="spoke 2 word"):
        synthesize(["at", "a", "two"], MALE)
    speech = synthesize(["at", "[['eI]]", "two"], MALE)
    assert [w.label for w in speech.words] == ["at", "[['eI]]", "two"]
    assert "'eI" in [p.label for p in speech.phonemes]


def test_unknown_voices_are_refused_with_their_name():
    with pytest.raises(EspeakError, match="variant 'nope'"):
        synthesize(["bin"], Voice("en+nope"))  # espeak-ng itself would silently ignore it
    with pytest.raises(EspeakError, match="no voice 'xx'"):
        synthesize(["bin"], Voice("xx"))
    assert {"m3", "f3", "f1", "m8", "Andy"} <= espeak.variants()  # the shipped demo speakers
