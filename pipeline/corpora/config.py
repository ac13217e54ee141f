"""The `corpus:` section of params.yaml as typed config objects (no media libraries imported here).

The download stage reads every key of a corpus but its `protocol` (prepare's, so a new protocol
never regenerates the corpus): it parses `CorpusDownloadConfig`. The prepare stage, and anything
else that declares the whole section, parses `CorpusConfig`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pipeline.corpora import espeak, grammar

MP2_DELAY = 481  # samples of MPEG audio layer II decoder delay (512-tap filterbank - 32 + 1)


@dataclass(frozen=True)
class VoiceConfig:
    """One demo speaker: an espeak-ng voice (language+variant) and its prosody (`corpus.demo.speakers.<id>`)."""

    voice: str
    rate: int  # words per minute
    pitch: int  # 0-100
    range: int  # 0-100

    @property
    def espeak_voice(self) -> espeak.Voice:
        return espeak.Voice(name=self.voice, rate=self.rate, pitch=self.pitch, range=self.range)


@dataclass(frozen=True)
class DemoVideoConfig:
    """Frame geometry, mouth animation and encoder settings (`corpus.demo.video`)."""

    width: int
    height: int
    fps: int
    face_width: float  # px between the cheek landmarks (GRID talkers: 103-122)
    nose_x: float  # where the nose tip lands in the frame, px
    nose_y: float
    mouth_open: float  # inner-lip gap at the loudest frame, as a fraction of mouth width
    dynamic_range_db: float  # frame energies this far below the loudest one close the mouth
    rounding: float  # mouth narrowing on rounded vowels (u:, oU, w ...)
    qscale: int  # MPEG-1 quantiser, 1 (best) .. 31
    audio_bitrate: str  # MP2

    def __post_init__(self) -> None:
        if espeak.SAMPLE_RATE % self.fps:
            raise ValueError(f"fps={self.fps} must divide espeak's {espeak.SAMPLE_RATE} Hz "
                             "so every frame spans a whole number of samples")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo corpus holds and how it is made (`corpus.demo` without `protocol`)."""

    seed: int  # sentences drawn per speaker from (seed, speaker id)
    utterances_per_speaker: int
    lead_silence: float  # s of silence before the first word
    trail_silence: float  # s, at least, after the last word (rounded up to whole frames)
    speakers: Mapping[str, VoiceConfig]
    video: DemoVideoConfig

    def __post_init__(self) -> None:
        if not self.speakers:
            raise ValueError("speakers is empty: give at least one `id: {voice: en+m3, rate, pitch, range}`")
        for speaker in self.speakers:
            if not re.fullmatch(r"[A-Za-z0-9-]+", speaker):  # it names a folder and prefixes utt_ids
                raise ValueError(f"speakers: id {speaker!r} must be letters, digits or '-'")
        if not 1 <= self.utterances_per_speaker <= grammar.N_SENTENCES:
            raise ValueError(f"utterances_per_speaker must be in 1..{grammar.N_SENTENCES}, got {self.utterances_per_speaker}")
        if self.lead_silence * espeak.SAMPLE_RATE < 2 * MP2_DELAY:  # the delay is taken out of it
            raise ValueError(f"lead_silence must be at least {2 * MP2_DELAY / espeak.SAMPLE_RATE:.2f} s, "
                             f"got {self.lead_silence}")

    @property
    def voices(self) -> dict[str, espeak.Voice]:
        return {speaker: v.espeak_voice for speaker, v in self.speakers.items()}


@dataclass(frozen=True)
class GridConfig:
    """Where the GRID clips come from (`corpus.grid` without `protocol`; see `pipeline.corpora.grid`)."""

    source: str  # sheffield | zenodo | a local directory
    speakers: tuple[str, ...] | str  # a list, or `all`
    sheffield_url: str
    zenodo_url: str


@dataclass(frozen=True)
class CorpusDownloadConfig:
    """`corpus:` as the download stage reads it: which corpus, and how to fetch or generate each."""

    name: Literal["demo", "grid"]
    demo: DemoConfig
    grid: GridConfig


@dataclass(frozen=True)
class DemoCorpusConfig(DemoConfig):
    """The whole `corpus.demo` block."""

    protocol: str  # a key of `protocols:`


@dataclass(frozen=True)
class GridCorpusConfig(GridConfig):
    """The whole `corpus.grid` block."""

    protocol: str  # a key of `protocols:`


@dataclass(frozen=True)
class CorpusConfig:
    """The whole `corpus:` section."""

    name: Literal["demo", "grid"]
    demo: DemoCorpusConfig
    grid: GridCorpusConfig

    @property
    def protocol(self) -> str:
        """The split protocol of the chosen corpus."""
        return {"demo": self.demo, "grid": self.grid}[self.name].protocol
