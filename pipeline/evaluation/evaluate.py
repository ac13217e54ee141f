"""Score a system against the ground truth, utterance by utterance, with the same code for every row.

A system is a V2A variant (its synthesis in `data/synth/<variant>/`) or one of the reference
rows built here from the ground truth:

- `ground_truth`: the real audio against itself. Signal metrics are perfect by definition;
  its WER is each ASR's floor on this corpus.
- `vocoder_ceiling`: the ground-truth log-mel through the vocoder (HiFi-GAN from
  `models/vocoder`, Griffin-Lim when none was trained): the best a mel-predicting model
  can reach with this vocoder.
- `mean_mel_baseline`: a system that ignores the video: the speaker's mean training log-mel
  frame (all training speakers' mean for speakers without training audio, i.e. `unseen`)
  held over the utterance's length and vocoded. What a model scores above it, it learned
  from the lips.

Every (reference, hypothesis) pair passes the input checks first; an unscorable pair is
kept as a row with its issues and NaN metrics, and counted. Scoring runs per utterance
through the shared `Executor` (process pool or Dask); ASRs and the vocoder are loaded once
per worker.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.atomic import atomic_dir, atomic_path, write_text
from pipeline.audio.io import fit_length
from pipeline.audio.mel import MelConfig, log_mel
from pipeline.evaluation.asr_ctc import CTCASR
from pipeline.evaluation.asr_sphinx import GridSphinxASR, SphinxConfig, in_grammar
from pipeline.evaluation.asr_sphinx import identity as sphinx_identity
from pipeline.evaluation.checks import CheckConfig, blocks_scoring, check_pair
from pipeline.evaluation.metrics import SIGNAL_METRICS, error_counts, reference_lengths, signal_metrics
from pipeline.evaluation.summary import summarize
from pipeline.executor import Executor, Failure
from pipeline.shards import ShardReader, list_shards, pack, unpack, write_shard

SPLITS = ("test", "unseen")
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

    @property
    def asrs(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("sphinx", self.sphinx is not None), ("ctc", self.ctc_dir is not None)) if on)


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


@lru_cache(maxsize=2)
def _sphinx(cfg: SphinxConfig) -> GridSphinxASR:
    return GridSphinxASR(cfg)


@lru_cache(maxsize=2)
def _ctc(model_dir: str) -> CTCASR:
    return CTCASR(model_dir)


@lru_cache(maxsize=2)
def _vocoder(vocoder_dir: str | None, mel: MelConfig) -> Any:
    from pipeline.training.inference import load_vocoder

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


def score(task: Task) -> dict[str, Any]:
    """All metrics of one utterance, or its issues and NaN metrics when it cannot be scored."""
    s = task.settings
    row: dict[str, Any] = {"utt_id": task.utt_id, "speaker": task.speaker, "split": task.split,
                           "transcript": task.transcript, "system": task.system}
    hyp = hypothesis(task)
    sr = task.ref_sr if task.system in REFERENCES else task.hyp_sr
    if hyp is None:
        row.update(scored=False, issues="hypothesis missing: no synthesis for this utterance", issue_kinds=["missing"])
        return _blank(row, s)
    issues = check_pair(task.ref, task.ref_sr, hyp, sr, s.checks)
    row.update(issues="; ".join(map(str, issues)), issue_kinds=sorted({i.kind for i in issues}))
    if task.keep_audio:  # kept as produced, unscored or not: a broken output is worth hearing
        row["_audio"] = (np.asarray(hyp, dtype=np.float32), sr)
    if blocks_scoring(issues):
        row["scored"] = False
        return _blank(row, s)
    hyp, _ = fit_length(np.asarray(hyp, dtype=np.float32), len(task.ref))
    scores, errors = signal_metrics(task.ref, hyp, sr, s.mel)
    if errors:
        row["issues"] = "; ".join(filter(None, [row["issues"], *errors]))
        row["issue_kinds"] = sorted(set(row["issue_kinds"]) | {"metric_error"})
    row.update(scored=True, **scores)
    n_words, n_chars = reference_lengths(task.transcript)
    row.update(ref_words=n_words, ref_chars=n_chars)
    for name in s.asrs:
        asr = _sphinx(s.sphinx) if name == "sphinx" else _ctc(s.ctc_dir)
        text = asr.transcribe(hyp, sr)
        c = error_counts(task.transcript, text)
        row.update({f"hyp_{name}": text, f"word_errors_{name}": c["word_errors"], f"char_errors_{name}": c["char_errors"],
                    f"wer_{name}": 100.0 * c["word_errors"] / c["ref_words"]})
    return row


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
          keep: set[str], means: dict[str, np.ndarray] | None) -> Iterator[Task]:
    """One task per ground-truth utterance of the given splits, streaming shard by shard."""
    for split, paths in shards.items():
        for path in paths:
            hyps: dict[str, tuple[np.ndarray, int]] = {}
            if synth_dir is not None:
                synth = synth_dir / path.relative_to(path.parents[1])
                if not synth.is_file():
                    raise FileNotFoundError(f"{synth} is missing: run the synthesis of {system} first")
                for r in ShardReader(synth).iter_rows(["utt_id", "audio", "sample_rate"]):
                    hyps[r["utt_id"]] = (np.array(unpack(r, "audio")), int(r["sample_rate"]))
            for r in ShardReader(path).iter_rows(ROI_COLUMNS):
                hyp, hyp_sr = hyps.get(r["utt_id"], (None, 0))
                mean = None if means is None else means.get(r["speaker"], means["*"])
                yield Task(r["utt_id"], r["speaker"], split, r["transcript"], np.array(unpack(r, "audio")), int(r["sample_rate"]),
                           system, hyp, hyp_sr, mean, r["utt_id"] in keep, settings)


def run(system: str, shards: dict[str, list[Path]], synth_dir: Path | None, settings: Settings, executor: Executor,
        keep: set[str], means: dict[str, np.ndarray] | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Score every utterance; returns the per-utterance table and the kept sample audio rows."""
    total = sum(len(ShardReader(p)) for ps in shards.values() for p in ps)
    rows, samples, failures = [], [], []
    for task_result in executor.imap(score, tasks(system, shards, synth_dir, settings, keep, means),
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


def write_outputs(system: str, df: pd.DataFrame, samples: list[dict[str, Any]], info: dict[str, Any],
                  eval_dir: Path, metrics_dir: Path, plots_dir: Path, splits: Sequence[str], asrs: Sequence[str]) -> dict[str, Any]:
    """Per-utterance parquet, report samples, metrics JSON (headline per split) and distribution CSVs."""
    with atomic_path(eval_dir / f"{system}.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    if samples:
        write_shard(eval_dir / "samples" / f"{system}.parquet", sorted(samples, key=lambda r: r["utt_id"]))
    metrics = {**summarize(df, splits, asrs), **info}
    write_text(metrics_dir / f"{system}.json", json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    with atomic_dir(plots_dir / system) as tmp:
        for split in splits:
            part = df[(df["split"] == split) & df["scored"]]
            for key in [*SIGNAL_METRICS, *(f"wer_{a}" for a in asrs)]:
                values = np.sort(part[key].dropna().to_numpy(dtype=float))
                if values.size:  # empirical quantile function: x = share of utterances at or below y
                    q = (np.arange(values.size) + 0.5) / values.size
                    pd.DataFrame({"quantile": np.round(q, 4), key: np.round(values, 4)}).to_csv(
                        tmp / f"{split}_{key}.csv", index=False)
    return metrics


def references_in_grammar(shards: dict[str, list[Path]]) -> float:
    """Share of reference transcripts the grammar ASR can output at all."""
    texts = [t for ps in shards.values() for p in ps for t in pq.read_table(p, columns=["transcript"]).column(0).to_pylist()]
    return float(np.mean([in_grammar(t) for t in texts])) if texts else float("nan")


def asr_identities(settings: Settings, shards: dict[str, list[Path]]) -> dict[str, Any]:
    """The named ASRs of a run with their hashes, for the metrics files."""
    out: dict[str, Any] = {}
    if settings.sphinx is not None:
        out["sphinx"] = {**sphinx_identity(settings.sphinx), "references_in_grammar": references_in_grammar(shards)}
    if settings.ctc_dir is not None:
        out["ctc"] = _ctc(settings.ctc_dir).identity()
    return out
