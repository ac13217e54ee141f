"""The `evaluate@<system>` and `evaluate_references` stages: config and paths -> outputs.

Paths follow docs/DATA.md through `Layout` (the repository, or a test's temporary folder).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.audio.mel import AudioConfig
from pipeline.config import parse, to_plain
from pipeline.evaluation.config import EvaluationConfig
from pipeline.evaluation.evaluate import (
    REFERENCES,
    Settings,
    asr_identities,
    has_ctc_model,
    roi_shards,
    run,
    sample_ids,
    speaker_mean_mels,
    vocoder_name,
    write_outputs,
)
from pipeline.evaluation.versions import collect
from pipeline.executor import Executor
from pipeline.inference.card import load_card
from pipeline.inference.vocoder import vocoder_dir
from pipeline.layout import Layout
from pipeline.streams import Catalog


def settings(cfg: EvaluationConfig, layout: Layout) -> Settings:
    """Worker settings: analysis, checks, the enabled ASRs and (reference rows) the vocoder directory."""
    if cfg.scoring.ctc and not has_ctc_model(layout.asr):
        raise FileNotFoundError(f"no trained CTC ASR in {layout.asr}: run the train_asr stage first")
    return Settings.of(cfg.scoring, layout.asr if cfg.scoring.ctc else None,
                       vocoder_dir(cfg.vocoder, layout) if cfg.vocoder else None)


def corpus_name(cfg: EvaluationConfig, layout: Layout) -> str:
    """The corpus the ground truth came from: the roi manifest's `corpus`, else params."""
    manifest = layout.roi / "manifest.parquet"
    if manifest.is_file():
        names = sorted(set(pd.read_parquet(manifest, columns=["corpus"])["corpus"].dropna()))
        if names:
            return "+".join(names)
    return cfg.corpus.name


def _common(cfg: EvaluationConfig, layout: Layout) -> tuple[Settings, dict[str, list[Path]], set[str]]:
    s = settings(cfg, layout)
    shards = roi_shards(layout.roi, cfg.evaluate.splits)
    if not shards:
        raise RuntimeError(f"no ground-truth shards for splits {list(cfg.evaluate.splits)} under {layout.roi}/shards")
    return s, shards, sample_ids(shards, cfg.evaluate.samples_per_split)


def _info(cfg: EvaluationConfig, layout: Layout, s: Settings, shards: dict[str, list[Path]], **extra: Any) -> dict[str, Any]:
    corpus = corpus_name(cfg, layout)
    return {**extra, "versions": collect(s.mel, s.checks, (corpus, cfg.protocol(corpus)),
                                         asr_identities(s, shards), s.max_offset_s)}


def _write(system: str, df: pd.DataFrame, samples: list[dict[str, Any]], info: dict[str, Any], layout: Layout,
           cfg: EvaluationConfig, s: Settings) -> dict[str, Any]:
    metrics = write_outputs(system, df, samples, info, layout, cfg.evaluate.splits, s.asrs)
    _print_summary(system, metrics)
    return metrics


def evaluate_system(system: str, cfg: EvaluationConfig, layout: Layout) -> dict[str, Any]:
    """Score `data/synth/<system>/` against the ground truth; returns the details file's content.

    Whatever model spoke, its model card (`data/synth/<system>/card.json`) names its kind and family.
    """
    synth = layout.synth(system)
    card = load_card(synth)
    info_file = synth / "info.json"
    synthesis = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else None
    # where the ground truth of what the model predicted lives (a model that sees video records its audio rates)
    audio = card.crop.get("audio")
    catalog = Catalog(layout, parse(AudioConfig, audio, f"{synth} card crop.audio")) if audio is not None else None
    # Scalars only: a card's vectors (the mean speaker embedding) would bury the provenance in numbers.
    extra = {k: v for k, v in to_plain(card.extra).items() if not isinstance(v, list)}
    model = {"name": card.name, "inputs": list(card.inputs), "extra": extra}
    return evaluate_shards(system, synth, cfg, layout, catalog, kind=card.kind, family=card.family, model=model,
                           synthesis=synthesis)


def evaluate_shards(system: str, synth: Path, cfg: EvaluationConfig, layout: Layout, catalog: Catalog | None = None,
                    **info: Any) -> dict[str, Any]:
    """Score the synthesis shards under `synth` as `system` (`info` goes into its details file); returns the details."""
    s, shards, keep = _common(cfg, layout)
    df, samples = run(system, shards, synth, s, Executor.from_config(cfg.executor), keep, catalog=catalog)
    return _write(system, df, samples, _info(cfg, layout, s, shards, system=system, **info), layout, cfg, s)


def evaluate_references(cfg: EvaluationConfig, layout: Layout) -> dict[str, dict[str, Any]]:
    """Score the three reference rows (see `pipeline.evaluation.evaluate`); `{name: details}`."""
    s, shards, keep = _common(cfg, layout)
    executor = Executor.from_config(cfg.executor)
    means = speaker_mean_mels(layout.roi, s.mel, executor)
    vocoder = vocoder_name(s.vocoder_dir, s.mel)
    out = {}
    for name, description in REFERENCES.items():
        df, samples = run(name, shards, None, s, executor, keep, means if name == "mean_mel_baseline" else None)
        extra = {"vocoder": vocoder} if name != "ground_truth" else {}
        info = _info(cfg, layout, s, shards, system=name, kind="reference", description=description, **extra)
        out[name] = _write(name, df, samples, info, layout, cfg, s)
    return out


def _print_summary(system: str, metrics: dict[str, Any]) -> None:
    parts = []
    for split in ("test", "unseen"):
        m = metrics.get(split)
        if m:
            unscored = sum(m["unscored"].values())
            parts.append(f"{split}: n={m['n']} unscored={unscored} PESQ-WB={m['pesq_wb']} STOI={m['stoi']} "
                         f"ESTOI={m['estoi']} " + " ".join(f"WER[{a}]={m.get(f'wer_{a}')}%" for a in ("sphinx", "ctc")
                                                          if f"wer_{a}" in m))
    print(f"evaluate {system}: " + " | ".join(parts), file=sys.stderr, flush=True)
