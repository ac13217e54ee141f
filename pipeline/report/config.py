"""The report's settings: params.yaml `report` (systems, questions, headline metrics) and what it shares."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.audio.mel import MelConfig
from pipeline.config import ConfigError
from pipeline.evaluation.asr_whisper import WhisperConfig
from pipeline.evaluation.evaluate import REFERENCES
from pipeline.evaluation.summary import headline_keys
from pipeline.splits import ProtocolConfig


@dataclass(frozen=True)
class Question:
    """An ablation question in words, answered by the paired difference `b - a` of two systems."""

    question: str
    a: str
    b: str


@dataclass(frozen=True)
class ReportConfig:
    """params.yaml `report`."""

    samples_per_split: int  # utterances per split with audio players and spectrograms
    curve_roots: tuple[str, ...]  # where DVCLive training runs are looked for
    systems: tuple[str, ...]  # the evaluated systems the page lists, in order, after the reference rows
    questions: tuple[Question, ...]
    headline: tuple[str, ...]  # metrics of the answers and of the charts
    answer_split: str  # the split the answers are given on
    # below this ESTOI of the vocoder ceiling on the answer split, every vocoded system is marked capped by it
    vocoder_ceiling_min_estoi: float

    def __post_init__(self) -> None:
        known = set(REFERENCES) | set(self.systems)
        if len(set(self.systems)) != len(self.systems):
            raise ValueError(f"systems lists a system twice: {list(self.systems)}")
        if set(self.systems) & set(REFERENCES):
            raise ValueError(f"systems: the reference rows {list(REFERENCES)} are always listed; leave them out")
        for i, q in enumerate(self.questions):
            for side in ("a", "b"):
                if getattr(q, side) not in known:
                    raise ValueError(f"questions[{i}].{side}: {getattr(q, side)!r} is neither in report.systems "
                                     f"nor a reference row ({', '.join(REFERENCES)})")
            if q.a == q.b:
                raise ValueError(f"questions[{i}]: compares {q.a!r} with itself")
        unknown = [k for k in self.headline if k not in headline_keys()]
        if unknown:
            raise ValueError(f"headline: unknown metrics {unknown}; choose from {headline_keys()}")


@dataclass(frozen=True)
class ReportStageConfig:
    """Everything the `report` stage reads from params."""

    report: ReportConfig
    splits: tuple[str, ...]  # evaluate.splits: the tables' splits, in order
    seed: int  # bootstrap resampling
    mel: MelConfig  # spectrograms of the sample utterances
    # `protocols`: the talkers each protocol names, to say when a run evaluated only some of them
    protocols: Mapping[str, ProtocolConfig]
    whisper: WhisperConfig  # asr.whisper: the page says when the third ASR is off

    def __post_init__(self) -> None:
        if self.report.answer_split not in self.splits:
            raise ConfigError(f"report.answer_split: {self.report.answer_split!r} is not one of evaluate.splits "
                             f"{list(self.splits)}")
