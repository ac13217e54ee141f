"""The evaluation's settings, parsed from `params.yaml` at the entry points (stages, `v2s score`).

`scoring_config` is shared by the `evaluate` stages and `v2s score`, so a pair of files is
scored with the very settings the stages use. Only the entry points call these parsers.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from pipeline.audio.mel import AudioConfig, MelConfig
from pipeline.config import ConfigError, Params, parse, parse_value
from pipeline.corpora.config import CorpusConfig
from pipeline.evaluation.asr_sphinx import SphinxConfig
from pipeline.evaluation.asr_whisper import WhisperConfig
from pipeline.evaluation.checks import CheckConfig
from pipeline.executor import ExecutorConfig
from pipeline.inference.vocoder import VocoderName


@dataclass(frozen=True)
class EvaluateConfig:
    """params.yaml `evaluate` (its `checks` completed with `audio.sample_rate`)."""

    splits: tuple[str, ...]  # each scored when it has utterances
    samples_per_split: int  # utterances per split whose audio is kept for the report
    max_offset_ms: float  # the sync offset is searched within +- this
    checks: CheckConfig


@dataclass(frozen=True)
class ScoringConfig:
    """What the score of one (reference, hypothesis) pair depends on besides the audio."""

    mel: MelConfig
    checks: CheckConfig
    sphinx: SphinxConfig
    ctc: bool  # asr.ctc.enabled: score with the trained in-domain ASR (models/asr)
    whisper: WhisperConfig
    max_offset_s: float  # evaluate.max_offset_ms, in seconds


@dataclass(frozen=True)
class CorpusProtocols:
    """`corpus.name` and each corpus's split protocol: what the details files record of `corpus:`."""

    name: str
    protocols: Mapping[str, str]  # corpus name -> its `corpus.<name>.protocol`


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything an `evaluate@<system>` or `evaluate_references` stage reads from params."""

    evaluate: EvaluateConfig
    scoring: ScoringConfig
    corpus: CorpusProtocols  # recorded in the details files: the corpus and its split protocol
    # evaluate_references only (synthesize.vocoder): the vocoder of the ceiling and baseline rows
    vocoder: VocoderName | None
    executor: ExecutorConfig

    def protocol(self, corpus: str) -> str:
        """The split protocol of corpus `corpus` ("unknown" for a name params has no section for)."""
        return self.corpus.protocols.get(corpus, "unknown")


def mel_config(params: Params) -> MelConfig:
    """The log-mel analysis of params.yaml `audio`."""
    return params.parse("audio", AudioConfig).mel


def splits(params: Params) -> tuple[str, ...]:
    """`evaluate.splits`, for stages that read only that key of `evaluate`."""
    value = params.raw("evaluate.splits")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"evaluate.splits: expected a list of split names, got {value!r}")
    return tuple(value)


def _evaluate(params: Params, mel: MelConfig) -> EvaluateConfig:
    section = params.raw("evaluate")
    if not isinstance(section, Mapping):
        raise ConfigError(f"evaluate: expected a mapping, got {section!r}")
    checks = section.get("checks")
    if isinstance(checks, Mapping):
        if "sample_rate" in checks:
            raise ConfigError("unknown key evaluate.checks.sample_rate: the checks use audio.sample_rate")
        section = {**section, "checks": {**checks, "sample_rate": mel.sample_rate}}
    return parse(EvaluateConfig, section, "evaluate")


def _flag(params: Params, dotted: str) -> bool:
    value = params.raw(dotted)
    if not isinstance(value, bool):
        raise ConfigError(f"{dotted}: expected true or false, got {value!r}")
    return value


def scoring_config(params: Params) -> ScoringConfig:
    """`audio`, `evaluate.checks`, `evaluate.max_offset_ms`, `asr.sphinx`, `asr.ctc.enabled` and `asr.whisper`,
    parsed strictly."""
    mel = mel_config(params)
    evaluate = _evaluate(params, mel)
    if evaluate.max_offset_ms < 0:
        raise ConfigError(f"evaluate.max_offset_ms: expected a non-negative number, got {evaluate.max_offset_ms}")
    return ScoringConfig(mel, evaluate.checks, params.parse("asr.sphinx", SphinxConfig),
                         _flag(params, "asr.ctc.enabled"), params.parse("asr.whisper", WhisperConfig),
                         evaluate.max_offset_ms / 1000)


def corpus_protocols(params: Params) -> CorpusProtocols:
    """`corpus.name` and `corpus.<each>.protocol`, the only keys of `corpus:` evaluation reads (declaring
    the whole section would record every demo voice in each evaluation's dvc.lock entry)."""
    name = parse_value(params.raw("corpus.name"), str, "corpus.name")
    corpora = [f.name for f in fields(CorpusConfig) if f.name != "name"]  # each corpus `corpus:` has a section for
    return CorpusProtocols(name, {c: parse_value(params.raw(f"corpus.{c}.protocol"), str, f"corpus.{c}.protocol")
                                  for c in corpora})


def evaluation_config(params: Params, references: bool) -> EvaluationConfig:
    """The config of `evaluate_references` (`references`) or of `evaluate@<system>`."""
    scoring = scoring_config(params)
    vocoder = None
    if references:
        vocoder = parse_value(params.raw("synthesize.vocoder"), VocoderName, "synthesize.vocoder")
    return EvaluationConfig(_evaluate(params, scoring.mel), scoring, corpus_protocols(params), vocoder,
                            params.parse("executor", ExecutorConfig))
