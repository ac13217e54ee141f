"""GRID transcripts: `.align` word alignments, or the sentence code in the file name.

An `.align` file has `start end word` per line, times in 1/25000 s. `sil` (leading/trailing
silence) and `sp` (short pause) entries mark non-speech and are not words of the sentence.
The demo corpus writes the same format, so both corpora read alike. Without an alignment,
a GRID file name (`bbaf2n.mpg`) still gives the sentence, though not its timing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.corpora.grammar import decode

TICKS_PER_SECOND = 25000
NON_WORDS = frozenset({"sil", "sp"})


class AlignmentError(ValueError):
    """A malformed `.align` file; the message names the file and line."""


@dataclass(frozen=True)
class Word:
    """One spoken word and its time span in seconds."""

    word: str
    start: float
    end: float


def parse_align(text: str, name: str = "<align>") -> list[Word]:
    """Words (without sil/sp) of an alignment's text, with times converted to seconds."""
    words = []
    previous_end = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise AlignmentError(f"{name}:{number}: expected 'start end word', got {line.strip()!r}")
        try:
            start, end = int(fields[0]), int(fields[1])
        except ValueError:
            raise AlignmentError(f"{name}:{number}: times must be integers (1/25000 s), got {line.strip()!r}") from None
        if not 0 <= start <= end or start < previous_end:
            raise AlignmentError(f"{name}:{number}: span {start}-{end} is negative, reversed or overlaps the previous one")
        previous_end = end
        if fields[2] not in NON_WORDS:
            words.append(Word(fields[2], start / TICKS_PER_SECOND, end / TICKS_PER_SECOND))
    if not words:
        raise AlignmentError(f"{name}: no words (only silence) in the alignment")
    return words


def read_align(path: str | os.PathLike[str]) -> list[Word]:
    """Parse a `.align` file."""
    path = Path(path)
    return parse_align(path.read_text(encoding="utf-8"), name=path.name)


def transcript(words: list[Word]) -> str:
    """The sentence spoken: the words joined by spaces."""
    return " ".join(w.word for w in words)


def transcript_from_name(path: str | os.PathLike[str]) -> str:
    """The sentence a GRID file name encodes: `.../bbaf2n.mpg` -> "bin blue at f two now"."""
    try:
        return " ".join(decode(Path(path).stem))
    except ValueError as exc:
        raise ValueError(f"no alignment, and the file name is not a GRID sentence code ({exc})") from None
