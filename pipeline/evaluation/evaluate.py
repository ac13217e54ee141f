"""Score a system against the ground truth, utterance by utterance, with the same code for every row.

A system is any trained model's synthesis in `data/synth/<system>/` (its model card says what
it is), or one of the reference rows built here from the ground truth:

- `ground_truth`: the real audio against itself. Signal metrics are perfect by definition;
  its WER is each ASR's floor on this corpus.
- `vocoder_ceiling`: the ground-truth log-mel through the vocoder (HiFi-GAN from
  `models/vocoder`, Griffin-Lim when none was trained): the best a mel-predicting model
  can reach with this vocoder.
- `mean_mel_baseline`: a system that ignores the video: the speaker's mean training log-mel
  frame (all training speakers' mean for speakers without training audio, i.e. `unseen`)
  held over the utterance's length and vocoded. What a model scores above it, it learned
  from the lips.

Every (reference, hypothesis) pair is scored by `score_pair`, which `v2s score` uses too: the
input checks first; an unscorable pair is kept as a row with its issues and NaN metrics, and
counted. Scoring runs per utterance through the shared `Executor` (process pool or Dask);
ASRs and the vocoder are loaded once per worker.

A synthesis that holds what its model predicted on the way (`pred_<stream>` columns, e.g. an LTS
model's units and prosody) is also scored against the stages' ground truth of those streams
(`feature_metrics`), whatever the audio checks say.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.atomic import atomic_dir, atomic_path, write_text
from pipeline.audio.io import fit_length
from pipeline.audio.mel import MelConfig, log_mel
from pipeline.evaluation.asr_ctc import CTCASR
from pipeline.evaluation.asr_sphinx import GridSphinxASR, SphinxConfig, in_grammar
from pipeline.evaluation.asr_sphinx import identity as sphinx_identity
from pipeline.evaluation.asr_whisper import WhisperASR, WhisperConfig
from pipeline.evaluation.checks import CheckConfig, Issue, blocks_scoring, check_pair
from pipeline.evaluation.config import ScoringConfig
from pipeline.evaluation.metrics import (
    SIGNAL_METRICS,
    error_counts,
    feature_metrics,
    reference_lengths,
    signal_metrics,
    stoi,
)
from pipeline.evaluation.summary import ASRS, METRICS_FILE_KEYS, VIDEO_USE_METRICS, metrics_file, summarize
from pipeline.executor import Executor, Failure
from pipeline.inference.card import card_path
from pipeline.inference.synthesis import PREDICTED
from pipeline.layout import Layout
from pipeline.shards import ShardReader, list_shards, pack, unpack, write_shard
from pipeline.streams import Catalog

REFERENCES: dict[str, str] = {
    "ground_truth": "ground-truth audio scored against itself: the ASRs' floor",
    "vocoder_ceiling": "ground-truth log-mel through the vocoder: the ceiling of a mel-predicting model",
    "mean_mel_baseline": "speaker's mean training log-mel held over the utterance, vocoded: ignores the video",
}
ROI_COLUMNS = ["utt_id", "speaker", "split", "transcript", "audio", "sample_rate"]


@dataclass(frozen=True)
class Settings:
    """What a worker needs besides the audio: rates, checks, which ASRs and which vocoder."""

    mel: MelConfig
    checks: CheckConfig
    sphinx: SphinxConfig | None  # None: the grammar ASR is off (transcripts outside GRID's grammar)
    ctc_dir: str | None
    vocoder_dir: str | None
    max_offset_s: float  # the sync offset's search range
    whisper: WhisperConfig | None = None  # None: off (the default offline: no weights)

    @classmethod
    def of(cls, scoring: ScoringConfig, ctc_dir: str | os.PathLike[str] | None,
           vocoder_dir: str | os.PathLike[str] | None = None) -> Settings:
        """Settings of `scoring`; `ctc_dir` None leaves the in-domain ASR out whatever `scoring.ctc` says."""
        return cls(scoring.mel, scoring.checks, scoring.sphinx if scoring.sphinx.enabled else None,
                   os.fspath(ctc_dir) if ctc_dir is not None else None,
                   os.fspath(vocoder_dir) if vocoder_dir is not None else None, scoring.max_offset_s,
                   scoring.whisper if scoring.whisper.enabled else None)

    @property
    def asrs(self) -> tuple[str, ...]:
        on = {"sphinx": self.sphinx is not None, "ctc": self.ctc_dir is not None, "whisper": self.whisper is not None}
        return tuple(n for n in ASRS if on[n])


@dataclass(frozen=True)
class PairScore:
    """The scores of one (reference, hypothesis) pair: input issues, metrics, what each ASR heard."""

    issues: list[Issue]
    metric_errors: list[str]  # metrics that could not be computed (NaN in `metrics`)
    metrics: dict[str, float]  # empty when an issue blocks scoring
    transcripts: dict[str, str]  # per ASR
    errors: dict[str, dict[str, int]]  # per ASR: word and character edit counts, when a reference text is given

    @property
    def scored(self) -> bool:
        return not blocks_scoring(self.issues)


@dataclass(frozen=True)
class Task:
    """One utterance of one system: the reference audio and either the hypothesis or how to make it."""

    utt_id: str
    speaker: str
    split: str
    transcript: str
    ref: np.ndarray
    ref_sr: int
    system: str  # a V2A variant, or a key of REFERENCES
    hyp: np.ndarray | None  # V2A synthesis (None: missing); unused for references
    hyp_sr: int
    mean_mel: np.ndarray | None  # for mean_mel_baseline
    keep_audio: bool  # return the hypothesis too (report samples)
    settings: Settings
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # streams the model predicted (by stream key) ...
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # ... and their ground truth
    deranged: np.ndarray | None = None  # the model's speech from another utterance's video (video-use check)


@lru_cache(maxsize=2)
def _sphinx(cfg: SphinxConfig) -> GridSphinxASR:
    return GridSphinxASR(cfg)


@lru_cache(maxsize=2)
def _ctc(model_dir: str) -> CTCASR:
    return CTCASR(model_dir)


def has_ctc_model(model_dir: str | os.PathLike[str]) -> bool:
    """Whether `model_dir` holds an exported model (`train_asr` writes the in-domain CTC ASR there)."""
    return card_path(model_dir).is_file()


@lru_cache(maxsize=2)
def _vocoder(vocoder_dir: str | None, mel: MelConfig) -> Any:
    from pipeline.inference.vocoder import load_vocoder

    return load_vocoder(vocoder_dir, mel, "cpu")  # CPU: same bytes on every worker and machine


def vocoder_name(vocoder_dir: str | None, mel: MelConfig) -> dict[str, Any]:
    """Which vocoder the reference rows use (HiFi-GAN with its hash, or Griffin-Lim)."""
    v = _vocoder(vocoder_dir, mel)
    return {"name": v.name, "sha256": v.sha256}


def hypothesis(task: Task) -> np.ndarray | None:
    """The audio a system produced for this utterance (references are made here)."""
    s = task.settings
    if task.system == "ground_truth":
        return task.ref
    if task.system == "vocoder_ceiling":
        return _vocoder(s.vocoder_dir, s.mel)(log_mel(task.ref, s.mel))
    if task.system == "mean_mel_baseline":
        frames = len(task.ref) // s.mel.hop_length
        return _vocoder(s.vocoder_dir, s.mel)(np.repeat(task.mean_mel[:, None], frames, axis=1))
    return task.hyp


@lru_cache(maxsize=1)
def _whisper(cfg: WhisperConfig) -> WhisperASR:
    return WhisperASR(cfg)


def asr(name: str, s: Settings) -> Any:
    """The ASR `name` of these settings, loaded once per process."""
    load = {"sphinx": lambda: _sphinx(s.sphinx), "ctc": lambda: _ctc(s.ctc_dir), "whisper": lambda: _whisper(s.whisper)}
    return load[name]()


def score_pair(ref: np.ndarray, ref_sr: int, hyp: np.ndarray, hyp_sr: int, transcript: str | None,
               s: Settings) -> PairScore:
    """Check, then score, one hypothesis against its reference: the one scoring function of the pipeline.

    The hypothesis is cut or zero-padded to the reference's length (the checks refuse larger
    differences than `length_tolerance_s`); `transcript` None skips the error counts.
    """
    issues = check_pair(ref, ref_sr, hyp, hyp_sr, s.checks)
    if blocks_scoring(issues):
        return PairScore(issues, [], {}, {}, {})
    hyp, _ = fit_length(np.asarray(hyp, dtype=np.float32), len(ref))
    metrics, metric_errors = signal_metrics(ref, hyp, hyp_sr, s.mel, s.max_offset_s)
    transcripts = {name: asr(name, s).transcribe(hyp, hyp_sr) for name in s.asrs}
    errors = {} if transcript is None else {k: error_counts(transcript, t) for k, t in transcripts.items()}
    return PairScore(issues, metric_errors, metrics, transcripts, errors)


def score(task: Task) -> dict[str, Any]:
    """All metrics of one utterance, or its issues and NaN metrics when it cannot be scored."""
    s = task.settings
    row: dict[str, Any] = {"utt_id": task.utt_id, "speaker": task.speaker, "split": task.split,
                           "transcript": task.transcript, "system": task.system}
    if task.predicted:
        row.update(feature_metrics(task.predicted, task.truth))
    hyp = hypothesis(task)
    sr = task.ref_sr if task.system in REFERENCES else task.hyp_sr
    if hyp is None:
        row.update(scored=False, issues="hypothesis missing: no synthesis for this utterance", issue_kinds=["missing"])
        return _blank(row, s)
    result = score_pair(task.ref, task.ref_sr, hyp, sr, task.transcript, s)
    row.update(issues="; ".join(map(str, result.issues)), issue_kinds=sorted({i.kind for i in result.issues}))
    if task.keep_audio:  # kept as produced, unscored or not: a broken output is worth hearing
        row["_audio"] = (np.asarray(hyp, dtype=np.float32), sr)
    if not result.scored:
        row["scored"] = False
        return _blank(row, s)
    if result.metric_errors:
        row["issues"] = "; ".join(filter(None, [row["issues"], *result.metric_errors]))
        row["issue_kinds"] = sorted(set(row["issue_kinds"]) | {"metric_error"})
    row.update(scored=True, **result.metrics)
    row.update(video_use_scores(task.ref, task.deranged, sr, s))
    # word counts only matter for WER: without an ASR, a corpus without transcripts still scores
    n_words, n_chars = reference_lengths(task.transcript) if s.asrs else (np.nan, np.nan)
    row.update(ref_words=n_words, ref_chars=n_chars)
    for name in s.asrs:
        c = result.errors[name]
        row.update({f"hyp_{name}": result.transcripts[name], f"word_errors_{name}": c["word_errors"],
                    f"char_errors_{name}": c["char_errors"], f"wer_{name}": 100.0 * c["word_errors"] / c["ref_words"]})
    return row


def video_use_scores(ref: np.ndarray, deranged: np.ndarray | None, sample_rate: int, s: Settings) -> dict[str, float]:
    """STOI and ESTOI of the speech made from another utterance's video, against this utterance's reference
    (`*_deranged`; NaN when it fails the input checks). A model that uses the lips loses score there; one
    that ignores them scores the same. Empty without such speech (references, models without video)."""
    if deranged is None:
        return {}
    if blocks_scoring(check_pair(ref, sample_rate, deranged, sample_rate, s.checks)):
        return {f"{m}_deranged": float("nan") for m in VIDEO_USE_METRICS}
    hyp, _ = fit_length(np.asarray(deranged, dtype=np.float32), len(ref))
    return {f"{m}_deranged": stoi(ref, hyp, sample_rate, extended=m == "estoi") for m in VIDEO_USE_METRICS}


def _blank(row: dict[str, Any], s: Settings) -> dict[str, Any]:
    """NaN metrics for an unscored row (same columns as a scored one)."""
    row.update({m: float("nan") for m in SIGNAL_METRICS})
    row.update(ref_words=np.nan, ref_chars=np.nan)
    for name in s.asrs:
        row.update({f"hyp_{name}": None, f"word_errors_{name}": np.nan, f"char_errors_{name}": np.nan,
                    f"wer_{name}": np.nan})
    return row


def roi_shards(roi_dir: str | os.PathLike[str], splits: Sequence[str]) -> dict[str, list[Path]]:
    """The ground-truth shards of each split (`data/roi/shards/<split>/`); empty splits omitted."""
    out = {s: list_shards(Path(roi_dir) / "shards" / s) for s in splits}
    return {s: v for s, v in out.items() if v}


def sample_ids(shards: dict[str, list[Path]], per_split: int) -> set[str]:
    """Utterances kept as audio for the report: the first of each speaker, speakers in order, per split.

    Every system keeps the same ones, so the report compares like with like.
    """
    keep: set[str] = set()
    for paths in shards.values():
        by_speaker: dict[str, str] = {}
        for p in paths:
            r = ShardReader(p)
            speaker = r.read(0, ["speaker"])["speaker"]
            by_speaker.setdefault(speaker, min(r.utt_ids))
        firsts = [by_speaker[k] for k in sorted(by_speaker)]
        keep.update(firsts[:per_split])
    return keep


def speaker_mean_mels(roi_dir: str | os.PathLike[str], mel: MelConfig, executor: Executor) -> dict[str, np.ndarray]:
    """Mean log-mel frame per training speaker, plus `*` for all training speakers together."""
    paths = [os.fspath(p) for p in list_shards(Path(roi_dir) / "shards" / "train")]
    if not paths:
        raise RuntimeError(f"no training shards under {roi_dir}/shards/train: the mean-mel baseline needs them")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    for result in executor.imap(_ShardMelSum(mel), paths, desc="speaker mean mels"):
        if isinstance(result, Failure):
            raise RuntimeError(f"mean log-mel: {result.message}")
        for speaker, (total, n) in result.items():
            sums[speaker] = sums.get(speaker, 0) + total
            counts[speaker] += n
    means = {k: (sums[k] / counts[k]).astype(np.float32) for k in sums}
    means["*"] = (sum(sums.values()) / sum(counts.values())).astype(np.float32)
    return means


@dataclass(frozen=True)
class _ShardMelSum:
    mel: MelConfig

    def __call__(self, path: str) -> dict[str, tuple[np.ndarray, int]]:
        out: dict[str, tuple[np.ndarray, int]] = {}
        for row in ShardReader(path).iter_rows(["speaker", "audio", "sample_rate"]):
            m = log_mel(np.array(unpack(row, "audio")), self.mel)
            total, n = out.get(row["speaker"], (0.0, 0))
            out[row["speaker"]] = (total + m.sum(axis=1, dtype=np.float64), n + m.shape[1])
        return out


def tasks(system: str, shards: dict[str, list[Path]], synth_dir: Path | None, settings: Settings,
          keep: set[str], means: dict[str, np.ndarray] | None, catalog: Catalog | None = None) -> Iterator[Task]:
    """One task per ground-truth utterance of the given splits, streaming shard by shard; `catalog` finds
    the ground truth of the streams a synthesis predicted."""
    for split, paths in shards.items():
        for path in paths:
            rel = path.relative_to(path.parents[1])
            hyps: dict[str, tuple[np.ndarray, int]] = {}
            predicted: dict[str, dict[str, np.ndarray]] = {}
            deranged: dict[str, np.ndarray] = {}
            if synth_dir is not None:
                synth = synth_dir / rel
                if not synth.is_file():
                    raise FileNotFoundError(f"{synth} is missing: run the synthesis of {system} first")
                for r in ShardReader(synth).iter_rows():
                    hyps[r["utt_id"]] = (np.array(unpack(r, "audio")), int(r["sample_rate"]))
                    if r.get("deranged_audio") is not None:
                        deranged[r["utt_id"]] = np.array(unpack(r, "deranged_audio"))
                    predicted[r["utt_id"]] = {c[len(PREDICTED):]: np.array(unpack(r, c)) for c in r
                                              if c.startswith(PREDICTED) and f"{c}_shape" in r}
            truth = _truth(catalog, rel, {k for p in predicted.values() for k in p})
            for r in ShardReader(path).iter_rows(ROI_COLUMNS):
                utt = r["utt_id"]
                hyp, hyp_sr = hyps.get(utt, (None, 0))
                mean = None if means is None else means.get(r["speaker"], means["*"])
                pred = predicted.get(utt, {})
                known = truth.get(utt, {})
                # an utterance a feature stage failed on has no ground truth to score its predictions against
                pred = pred if set(pred) <= set(known) else {}
                yield Task(utt, r["speaker"], split, r["transcript"], np.array(unpack(r, "audio")), int(r["sample_rate"]),
                           system, hyp, hyp_sr, mean, utt in keep, settings, pred, {k: known[k] for k in pred},
                           deranged.get(utt))


def _truth(catalog: Catalog | None, rel: Path, keys: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """{utt_id: {stream key: ground truth}} of shard `rel` for the predicted streams `keys` (rows the
    feature stage failed on are left out)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    if keys and catalog is None:
        raise ValueError(f"the synthesis predicted {sorted(keys)} but no catalog of their ground truth was given")
    for key in sorted(keys):
        stream = catalog[key]  # type: ignore[index]
        for r in ShardReader(stream.root / rel).iter_rows(["utt_id", stream.column]):
            if r[stream.column] is not None:
                out.setdefault(r["utt_id"], {})[key] = np.array(unpack(r, stream.column))
    return out


def run(system: str, shards: dict[str, list[Path]], synth_dir: Path | None, settings: Settings, executor: Executor,
        keep: set[str], means: dict[str, np.ndarray] | None = None,
        catalog: Catalog | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Score every utterance; returns the per-utterance table and the kept sample audio rows."""
    total = sum(len(ShardReader(p)) for ps in shards.values() for p in ps)
    rows, samples, failures = [], [], []
    for task_result in executor.imap(score, tasks(system, shards, synth_dir, settings, keep, means, catalog),
                                     desc=f"score {system}", total=total):
        if isinstance(task_result, Failure):
            failures.append(task_result.message)
            continue
        kept = task_result.pop("_audio", None)
        if kept is not None:
            samples.append({"utt_id": task_result["utt_id"], "split": task_result["split"], **pack("audio", kept[0]),
                            "sample_rate": kept[1]})
        rows.append(task_result)
    if failures:  # a crash is a bug or a broken file, not a model's score: stop and say which
        raise RuntimeError(f"{system}: {len(failures)} utterances failed to score, e.g. {failures[0]}")
    if not rows:
        raise RuntimeError(f"{system}: no utterances in splits {list(shards)}")
    return pd.DataFrame(rows).sort_values("utt_id", ignore_index=True), samples


def write_outputs(system: str, df: pd.DataFrame, samples: list[dict[str, Any]], info: dict[str, Any], layout: Layout,
                  splits: Sequence[str], asrs: Sequence[str]) -> dict[str, Any]:
    """Per-utterance parquet, report samples, the metrics JSON (headline numbers per split), the details JSON
    beside it (every number, counts, `info`) and distribution CSVs of the headline numbers; returns the details."""
    with atomic_path(layout.eval(system)) as tmp:
        df.to_parquet(tmp, index=False)
    if samples:
        write_shard(layout.eval_samples(system), sorted(samples, key=lambda r: r["utt_id"]))
    summary = summarize(df, splits, asrs)
    details = {**summary, **info}
    write_text(layout.metrics_details(system), json.dumps(details, indent=2, sort_keys=False) + "\n")
    write_text(layout.metrics(system), json.dumps(metrics_file(summary), indent=2, sort_keys=False) + "\n")
    with atomic_dir(layout.plots(system)) as tmp:
        for split in splits:
            part = df[(df["split"] == split) & df["scored"]]
            for key in METRICS_FILE_KEYS:
                values = np.sort(part[key].dropna().to_numpy(dtype=float)) if key in part else np.empty(0)
                if values.size:  # empirical quantile function: x = share of utterances at or below y
                    q = (np.arange(values.size) + 0.5) / values.size
                    pd.DataFrame({"quantile": np.round(q, 4), key: np.round(values, 4)}).to_csv(
                        tmp / f"{split}_{key}.csv", index=False)
    return details


def references_in_grammar(shards: dict[str, list[Path]]) -> float:
    """Share of reference transcripts the grammar ASR can output at all."""
    texts = [t for ps in shards.values() for p in ps for t in pq.read_table(p, columns=["transcript"]).column(0).to_pylist()]
    return float(np.mean([in_grammar(t) for t in texts])) if texts else float("nan")


def asr_identity(name: str, s: Settings) -> dict[str, Any]:
    """Name, version and hashes of one ASR of these settings."""
    return sphinx_identity(s.sphinx) if name == "sphinx" else asr(name, s).identity()


def asr_identities(settings: Settings, shards: dict[str, list[Path]]) -> dict[str, Any]:
    """The named ASRs of a run with their hashes, for the details files."""
    out = {name: asr_identity(name, settings) for name in settings.asrs}
    if "sphinx" in out:
        out["sphinx"]["references_in_grammar"] = references_in_grammar(shards)
    return out
