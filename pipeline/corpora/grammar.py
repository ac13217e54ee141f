"""GRID's sentence grammar (Cooke et al. 2006): vocabulary, utterance codes, seeded sampling.

A GRID sentence is six words, one per slot: command colour preposition letter digit adverb,
e.g. "bin blue at f two now". GRID names each clip by the first character of every word
(`bbaf2n`), with `z` for zero; the code alone determines the sentence.
"""
from __future__ import annotations

from collections.abc import Sequence
from math import prod

import numpy as np

# Slot order is the sentence order. Letters exclude "w" (its name has three syllables).
WORDS: dict[str, tuple[str, ...]] = {
    "command": ("bin", "lay", "place", "set"),
    "colour": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": tuple("abcdefghijklmnopqrstuvxyz"),
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}
N_SENTENCES = prod(len(words) for words in WORDS.values())


def _code_char(slot: str, word: str) -> str:
    if slot == "digit":
        index = WORDS["digit"].index(word)
        return "z" if index == 0 else str(index)
    return word[0]


# One character per word; unique within each slot, so codes decode unambiguously.
_CHAR_TO_WORD: tuple[dict[str, str], ...] = tuple(
    {_code_char(slot, word): word for word in words} for slot, words in WORDS.items()
)


def encode(words: Sequence[str]) -> str:
    """GRID utterance code of a sentence: `("bin", "blue", "at", "f", "two", "now")` -> `bbaf2n`."""
    if len(words) != len(WORDS):
        raise ValueError(f"a GRID sentence has {len(WORDS)} words, got {len(words)}: {' '.join(words)!r}")
    chars = []
    for (slot, vocabulary), word in zip(WORDS.items(), words):
        if word not in vocabulary:
            raise ValueError(f"{word!r} is not a GRID {slot} (one of {', '.join(vocabulary)})")
        chars.append(_code_char(slot, word))
    return "".join(chars)


def decode(code: str) -> tuple[str, ...]:
    """Words of a GRID utterance code: `bbaf2n` -> `("bin", "blue", "at", "f", "two", "now")`."""
    if len(code) != len(WORDS):
        raise ValueError(f"a GRID code has {len(WORDS)} characters, got {code!r}")
    words = []
    for slot, table, char in zip(WORDS, _CHAR_TO_WORD, code):
        if char not in table:
            raise ValueError(f"{code!r}: {char!r} is not a GRID {slot} code (one of {''.join(table)})")
        words.append(table[char])
    return tuple(words)


def sentence(index: int) -> tuple[str, ...]:
    """The `index`-th sentence of the grammar (mixed radix over the slots, last slot fastest)."""
    if not 0 <= index < N_SENTENCES:
        raise ValueError(f"sentence index must be in [0, {N_SENTENCES}), got {index}")
    words = []
    for vocabulary in reversed(WORDS.values()):
        index, digit = divmod(index, len(vocabulary))
        words.append(vocabulary[digit])
    return tuple(reversed(words))


def sample_codes(n: int, seed: int | Sequence[int]) -> list[str]:
    """`n` distinct utterance codes drawn uniformly from the grammar by a seeded generator."""
    if not 0 <= n <= N_SENTENCES:
        raise ValueError(f"can draw 0..{N_SENTENCES} distinct GRID sentences, asked for {n}")
    rng = np.random.default_rng(seed)
    return [encode(sentence(int(i))) for i in rng.choice(N_SENTENCES, size=n, replace=False)]
