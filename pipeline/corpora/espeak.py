"""Speech synthesis with espeak-ng through ctypes: audio plus word and phoneme timings.

The library and its voice data come from the `espeakng-loader` wheel, so synthesis runs
offline and is the same on every machine with the same wheel.
"""
from __future__ import annotations

import _ctypes
import atexit
import contextlib
import ctypes
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Constants of espeak-ng's public header (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 0x1
_PHONEMES = 0x100  # lets a word be given as phoneme mnemonics in [[...]]
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_RATE, _PITCH, _RANGE = 1, 3, 4
_PAUSES = frozenset({"_", "_:", "_!", "_;", "_^_"})
SAMPLE_RATE = 22050  # espeak-ng's native output rate
_LOCK = threading.Lock()  # libespeak-ng is global state: one utterance at a time per process


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset in the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index in the output: finer than audio_position
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakError(RuntimeError):
    """espeak-ng refused a voice or a text, or its events do not match the words asked for."""


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (`language[+variant]`, e.g. `en-us+f2`) and its prosody settings."""

    name: str
    rate: int = 175  # words per minute (80-450)
    pitch: int = 50  # base pitch, 0-100
    range: int = 50  # pitch range, 0-100 (0 = monotone)


@dataclass(frozen=True)
class Segment:
    """A labelled span of the synthesised audio, in samples (`end` exclusive)."""

    label: str
    start: int
    end: int


@dataclass(frozen=True)
class Speech:
    """Synthesised audio with the span of every word asked for and of every phoneme spoken."""

    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    words: tuple[Segment, ...]  # one per requested word, in order; ends where the next starts
    phonemes: tuple[Segment, ...]  # espeak mnemonics (e.g. 'u:, aI, _: for a pause)


@lru_cache(maxsize=1)
def _private_library() -> str:
    """A copy of libespeak-ng that only this module loads, so unloading it really resets it."""
    import espeakng_loader

    folder = Path(tempfile.mkdtemp(prefix="v2s-espeak-"))
    atexit.register(shutil.rmtree, folder, True)
    return str(Path(shutil.copy2(espeakng_loader.get_library_path(), folder / "libespeak-ng.so")))


@lru_cache(maxsize=1)
def variants() -> frozenset[str]:
    """Names of the voice variants the wheel's data carries (the part after `+`, e.g. `m3`, `f2`)."""
    import espeakng_loader

    return frozenset(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir())


class _Synthesis:
    """One freshly loaded libespeak-ng: collects the audio and events of one utterance."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, int, str]] = []  # (type, text position, sample, phoneme)
        self.callback = _Callback(self._collect)  # kept referenced: the C side holds only a pointer

    def _collect(self, wav: ctypes.Array, n_samples: int, events: ctypes.Array) -> int:
        if n_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            label = bytes(event.id.string).split(b"\0")[0].decode() if event.type == _EVENT_PHONEME else ""
            self.events.append((event.type, event.text_position, event.sample, label))
            i += 1
        return 0  # 0 = go on synthesising

    def set_voice(self, voice: Voice) -> None:
        variant = voice.name.partition("+")[2]
        if variant and variant not in variants():
            # espeak-ng itself silently ignores an unknown variant
            raise EspeakError(f"espeak-ng has no voice variant {variant!r} (e.g. {', '.join(sorted(variants())[:8])})")
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice.name!r} (expected language[+variant], e.g. en+m3)")
        for parameter, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.range)):
            if self.lib.espeak_SetParameter(parameter, int(value), 0) != 0:
                raise EspeakError(f"espeak-ng rejected setting {parameter}={value} for voice {voice.name!r}")

    def speak(self, text: str) -> np.ndarray:
        data = text.encode()
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _PHONEMES, None, None)
        if status != 0:
            raise EspeakError(f"espeak-ng failed (status {status}) on {text!r}")
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@contextlib.contextmanager
def _fresh_library() -> Iterator[ctypes.CDLL]:
    """Load libespeak-ng anew and unload it afterwards.

    Its synthesiser keeps state between utterances (pitch flutter index, waveform phase, echo
    buffer), so the same text spoken twice in one process differs; a fresh load makes every
    utterance depend on its own inputs only (about 5 ms).
    """
    import espeakng_loader

    lib = ctypes.CDLL(_private_library())
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    data = espeakng_loader.get_data_path()
    # DONT_EXIT: an initialisation error must come back as a return code, not exit() the process.
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(),
                                 _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
    try:
        if rate != SAMPLE_RATE:
            raise EspeakError(f"espeak-ng failed to initialise at {SAMPLE_RATE} Hz (got {rate}) with data in {data}")
        yield lib
    finally:
        if rate > 0:
            lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)


def synthesize(words: Sequence[str], voice: Voice, seed: int = 0) -> Speech:
    """Speak `words` (a word may be phoneme mnemonics in `[[...]]`) with one timed segment per word."""
    if not words:
        raise ValueError("nothing to say: `words` is empty")
    text = " ".join(words)
    with _LOCK, _fresh_library() as lib:
        synthesis = _Synthesis(lib)
        lib.espeak_SetSynthCallback(synthesis.callback)
        synthesis.set_voice(voice)
        lib.espeak_ng_SetRandSeed(seed)  # the voices' noise sources draw from it
        audio = synthesis.speak(text)
        events = synthesis.events
    n = len(audio)
    # Character offset (1-based, as espeak reports) where each word starts.
    offsets = np.cumsum([1] + [len(w) + 1 for w in words[:-1]])
    word_events = [(pos, sample) for kind, pos, sample, _ in events if kind == _EVENT_WORD]
    phoneme_events = [(label, sample) for kind, _, sample, label in events if kind == _EVENT_PHONEME]
    word_starts = _word_starts(words, offsets, word_events, text)
    pauses = [s for label, s in phoneme_events if label in _PAUSES and s > word_starts[-1]]
    bounds = word_starts + [pauses[0] if pauses else n]
    word_segments = tuple(Segment(w, bounds[i], bounds[i + 1]) for i, w in enumerate(words))
    phoneme_bounds = [s for _, s in phoneme_events] + [n]
    phonemes = tuple(Segment(label, phoneme_bounds[i], phoneme_bounds[i + 1])
                     for i, (label, _) in enumerate(phoneme_events))
    return Speech(audio.astype(np.float32) / 32768.0, SAMPLE_RATE, word_segments, phonemes)


def _word_starts(words: Sequence[str], offsets: np.ndarray, events: list[tuple[int, int]], text: str) -> list[int]:
    """Start sample of each requested word from espeak's word events, matched by text position."""
    starts: list[int | None] = [None] * len(words)
    for position, sample in events:
        index = int(np.searchsorted(offsets, position, side="right")) - 1
        if index >= 0 and starts[index] is None:
            starts[index] = sample
    missing = [w for w, s in zip(words, starts) if s is None]
    if missing or len(events) != len(words):
        raise EspeakError(f"espeak-ng spoke {len(events)} word(s) for the {len(words)} in {text!r}"
                          f"{'; no event for ' + ', '.join(map(repr, missing)) if missing else ''}")
    return [int(s) for s in starts]  # type: ignore[arg-type]
