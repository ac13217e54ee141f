"""Which of a split protocol's talkers a run evaluated: a protocol applied to some of its talkers says so.

A paper's numbers for a protocol were measured on all the talkers the protocol puts in a split;
a run on one of them (GRID's seen-4 with only s1 downloaded) is not the same measurement, and
the report must say so wherever it names the protocol and beside the papers' rows.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipeline.splits import UNKNOWN_SPEAKER, Protocol, ProtocolConfig


def _natural(speaker: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts s2 before s10."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", speaker) if p)


def listed_talkers(cfg: ProtocolConfig, split: str) -> frozenset[str]:
    """The talkers protocol `cfg` can put in `split` by name (none for `per_utterance: all`, which names none).

    With `hold_out`, which of the per-utterance talkers land in `unseen` rather than `test` depends
    on the seed and on which talkers exist, so both splits list all of them.
    """
    protocol = Protocol.from_config("", cfg)
    out = {s for s, sp in protocol.per_speaker.items() if sp == split}
    if protocol.per_utterance is not None and (protocol.fractions.get(split, 0.0) > 0
                                               or (split == "unseen" and protocol.hold_out > 0)):
        out.update(protocol.per_utterance)
    return frozenset(out)


@dataclass(frozen=True)
class Coverage:
    """A protocol's named talkers per evaluated split, against the talkers of the evaluated utterances."""

    protocol: str
    listed: Mapping[str, frozenset[str]] = field(default_factory=dict)  # split -> talkers the protocol names there
    present: frozenset[str] = frozenset()  # talkers of the evaluated utterances, every split together

    @property
    def talkers(self) -> list[str]:
        """Every talker the protocol names in the evaluated splits."""
        return sorted(set().union(*self.listed.values()), key=_natural)

    def partial(self, split: str | None = None) -> bool:
        """Whether a talker the protocol names (in `split`, or in any evaluated split) was not evaluated.

        Talkers are compared over all evaluated splits together: with `hold_out` a talker may sit in
        `test` or `unseen`, and a talker is in one split only otherwise.
        """
        named = set(self.talkers) if split is None else self.listed.get(split, frozenset())
        return bool(named - self.present)

    @property
    def label(self) -> str:
        """The protocol's name, and when only some of its talkers were evaluated, which: `seen-4, 1 of 4 talkers: s1`."""
        if not self.partial():
            return self.protocol
        have = [t for t in self.talkers if t in self.present]
        return f"{self.protocol}, {len(have)} of {len(self.talkers)} talkers: {', '.join(have) or 'none'}"


def coverage(protocol: str, protocols: Mapping[str, ProtocolConfig], splits: Iterable[str],
             speakers: Iterable[str]) -> Coverage:
    """Coverage of protocol `protocol` (as `protocols` defines it) by the evaluated `speakers` of `splits`.

    A protocol `protocols` does not define (a corpus named "unknown") names no talkers, so it is
    never called partial.
    """
    cfg = protocols.get(protocol)
    listed = {sp: listed_talkers(cfg, sp) for sp in splits} if cfg is not None else {}
    return Coverage(protocol, listed, frozenset(s for s in speakers if s != UNKNOWN_SPEAKER))
