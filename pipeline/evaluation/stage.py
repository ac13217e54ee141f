"""The `train_asr`, `evaluate@<variant>` and `evaluate_references` stages: params and paths -> outputs.

Paths follow docs/DATA.md, relative to `root` (the repository, or a test's temporary folder).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.audio.mel import MelConfig
from pipeline.config import get
from pipeline.evaluation import asr_ctc
from pipeline.evaluation.asr_sphinx import SphinxConfig
from pipeline.evaluation.checks import CheckConfig
from pipeline.evaluation.evaluate import (
    REFERENCES, SPLITS, Settings, asr_identities, roi_shards, run, sample_ids, speaker_mean_mels, vocoder_name,
    write_outputs,
)
from pipeline.evaluation.versions import collect
from pipeline.executor import Executor, Failure
from pipeline.shards import ShardReader, list_shards, unpack


_LAYOUT = {"roi": "data/roi", "synth": "data/synth", "eval": "data/eval", "metrics": "reports/metrics",
           "plots": "reports/plots", "asr": "models/asr", "asr_live": "reports/train_asr", "vocoder": "models/vocoder"}


@dataclass(frozen=True)
class Paths:
    """Where the evaluation reads and writes (docs/DATA.md), under one root."""

    roi: Path
    synth: Path
    eval: Path
    metrics: Path
    plots: Path
    asr: Path
    asr_live: Path
    vocoder: Path

    @classmethod
    def under(cls, root: str | os.PathLike[str] = ".") -> "Paths":
        return cls(**{k: Path(root) / v for k, v in _LAYOUT.items()})


def settings(params: dict[str, Any], paths: Paths) -> Settings:
    """Worker settings from params: mel, checks, the enabled ASRs and the vocoder directory."""
    sphinx_on = bool(get(params, "asr.sphinx.enabled", True))
    ctc_on = bool(get(params, "asr.ctc.enabled", True))
    if ctc_on and not (paths.asr / "config.json").is_file():
        raise FileNotFoundError(f"{paths.asr}/config.json is missing: run the train_asr stage first")
    # The reference rows use the vocoder the melspec variants' synthesis uses.
    hifigan = get(params, "synthesize.vocoder", "hifigan") == "hifigan"
    return Settings(MelConfig.from_params(params), CheckConfig.from_params(params),
                    SphinxConfig.from_params(params) if sphinx_on else None,
                    os.fspath(paths.asr) if ctc_on else None, os.fspath(paths.vocoder) if hifigan else None)


def corpus_name(params: dict[str, Any], paths: Paths) -> str:
    """The corpus the ground truth came from: the roi manifest's `corpus`, else params."""
    manifest = paths.roi / "manifest.parquet"
    if manifest.is_file():
        names = sorted(set(pd.read_parquet(manifest, columns=["corpus"])["corpus"].dropna()))
        if names:
            return "+".join(names)
    return str(get(params, "corpus.name", "unknown"))


def _common(params: dict[str, Any], paths: Paths) -> tuple[Settings, dict[str, list[Path]], Executor, list[str], set[str]]:
    s = settings(params, paths)
    splits = list(get(params, "evaluate.splits", SPLITS))
    shards = roi_shards(paths.roi, splits)
    if not shards:
        raise RuntimeError(f"no ground-truth shards for splits {splits} under {paths.roi}/shards")
    keep = sample_ids(shards, int(get(params, "evaluate.samples_per_split", 2)))
    return s, shards, Executor.from_params(params), splits, keep


def _info(params: dict[str, Any], paths: Paths, s: Settings, shards: dict[str, list[Path]], **extra: Any) -> dict[str, Any]:
    corpus = corpus_name(params, paths)
    return {**extra, "versions": collect(params, corpus, asr_identities(s, shards))}


def evaluate_variant(params: dict[str, Any], variant: str, paths: Paths | None = None) -> dict[str, Any]:
    """Score `data/synth/<variant>/` against the ground truth; returns the metrics file's content."""
    paths = paths or Paths.under()
    spec = get(params, f"v2a.variants.{variant}")
    if spec is None:
        raise KeyError(f"no variant {variant!r} in v2a.variants")
    s, shards, executor, splits, keep = _common(params, paths)
    synth = paths.synth / variant
    info_file = synth / "info.json"
    synthesis = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else None
    df, samples = run(variant, shards, synth, s, executor, keep)
    info = _info(params, paths, s, shards, system=variant, kind="v2a", variant=spec, synthesis=synthesis)
    metrics = write_outputs(variant, df, samples, info, paths.eval, paths.metrics, paths.plots, splits, s.asrs)
    _print_summary(variant, metrics)
    return metrics


def evaluate_references(params: dict[str, Any], paths: Paths | None = None) -> dict[str, dict[str, Any]]:
    """Score the three reference rows (see `pipeline.evaluation.evaluate`); `{name: metrics}`."""
    paths = paths or Paths.under()
    s, shards, executor, splits, keep = _common(params, paths)
    means = speaker_mean_mels(paths.roi, s.mel, executor)
    vocoder = vocoder_name(s.vocoder_dir, s.mel)
    out = {}
    for name, description in REFERENCES.items():
        df, samples = run(name, shards, None, s, executor, keep, means if name == "mean_mel_baseline" else None)
        extra = {"vocoder": vocoder} if name != "ground_truth" else {}
        info = _info(params, paths, s, shards, system=name, kind="reference", description=description, **extra)
        out[name] = write_outputs(name, df, samples, info, paths.eval, paths.metrics, paths.plots, splits, s.asrs)
        _print_summary(name, out[name])
    return out


def _print_summary(system: str, metrics: dict[str, Any]) -> None:
    parts = []
    for split in ("test", "unseen"):
        m = metrics.get(split)
        if m:
            unscored = sum(m["unscored"].values())
            parts.append(f"{split}: n={m['n']} unscored={unscored} PESQ={m['pesq']} STOI={m['stoi']} "
                         f"ESTOI={m['estoi']} " + " ".join(f"WER[{a}]={m.get(f'wer_{a}')}%" for a in ("sphinx", "ctc")
                                                          if f"wer_{a}" in m))
    print(f"evaluate {system}: " + " | ".join(parts), file=sys.stderr, flush=True)


def _features_of_shard(job: tuple[str, MelConfig]) -> list[tuple[np.ndarray, str]]:
    path, mel = job
    return [(asr_ctc.features(np.array(unpack(r, "audio")), int(r["sample_rate"]), mel), r["transcript"])
            for r in ShardReader(path).iter_rows(["audio", "sample_rate", "transcript"])]


def load_asr_split(roi_dir: Path, split: str, mel: MelConfig, executor: Executor) -> list[tuple[np.ndarray, str]]:
    """Normalised features and transcripts of one ground-truth split, in shard order."""
    out: list[tuple[np.ndarray, str]] = []
    jobs = [(os.fspath(p), mel) for p in list_shards(roi_dir / "shards" / split)]
    for result in executor.imap(_features_of_shard, jobs, desc=f"asr features {split}"):
        if isinstance(result, Failure):
            raise RuntimeError(f"asr features ({split}): {result.message}")
        out.extend(result)
    return out


def train_asr(params: dict[str, Any], paths: Paths | None = None) -> dict[str, Any]:
    """Train the in-domain CTC ASR on the ground-truth `train` split, select on `val` -> models/asr/."""
    from dvclive import Live

    paths = paths or Paths.under()
    mel = MelConfig.from_params(params)
    cfg = asr_ctc.CTCConfig.from_params(params)
    executor = Executor.from_params(params)
    train_set = load_asr_split(paths.roi, "train", mel, executor)
    val_set = load_asr_split(paths.roi, "val", mel, executor)
    # dvc.yaml declares the DVCLive files itself: DVCLive must not edit it or make experiments.
    live = Live(os.fspath(paths.asr_live), dvcyaml=False, save_dvc_exp=False, report=None)

    def log(epoch: int, values: dict[str, float]) -> None:
        live.step = epoch
        for k, v in values.items():
            live.log_metric(k.replace("_", "/", 1), float(v))
        live.make_summary()

    try:
        model, vocab, summary = asr_ctc.train(train_set, val_set, cfg, log)
    finally:
        live.end()
    asr_ctc.save(paths.asr, model, vocab, cfg, mel, summary)
    print(f"train_asr: {summary['n_train']} train / {summary['n_val']} val utterances, vocabulary {len(vocab)}, "
          f"best epoch {summary['best_epoch']}: val WER {summary['val_wer']}% "
          f"(most frequent training sentence: {summary['val_chance_wer']}%)", file=sys.stderr, flush=True)
    return summary
