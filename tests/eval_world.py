"""A small real evaluation world for the evaluation and report tests, built once per session.

Ground truth: GRID-grammar sentences spoken by espeak-ng voices (real synthetic speech, made
offline in a second), laid out as the roi stage's shards. Two "systems" are real degraded
signals, the ground truth's log-mel inverted by Griffin-Lim (one with added noise), and a
third holds broken outputs (silent, clipped, wrong rate, missing) to exercise the checks.
Each synthesis folder carries a model card, as the synthesize stage writes it; the third's
kind is not one the pipeline has, so nothing can assume a kind. Configs come from the real
params.yaml with a few overrides (a tiny CTC ASR, one worker, the world's systems and question).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import paths
import pytest

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.io import resample
from pipeline.audio.mel import MelConfig, log_mel
from pipeline.config import Params, load_params
from pipeline.corpora import espeak, grammar
from pipeline.corpora.demo import SPOKEN
from pipeline.evaluation import asr_ctc, stage
from pipeline.inference.card import ModelCard, save_card
from pipeline.layout import Layout
from pipeline.shards import pack, write_shard
from stages import evaluate as evaluate_stage
from stages import report as report_stage
from stages import train_asr as train_asr_stage

REPO = paths.REPO

SR = 16000
SPF = 640  # samples per video frame at 25 fps
VOICES = {"d1": espeak.Voice("en+m3", 165, 40, 50), "d2": espeak.Voice("en+f2", 175, 60, 60),
          "d3": espeak.Voice("en-us+m1", 180, 45, 40)}
LAYOUT = {"d1": {"train": 10, "val": 2, "test": 2}, "d2": {"train": 10, "val": 2, "test": 2}, "d3": {"unseen": 2}}
# system: (kind, family, card extra) as its model card says
VARIANTS = {"gl_noisy": ("v2a", "melspec", {"decoder": "scratch"}),
            "gl_clean": ("v2a", "melspec", {"decoder": "pretrained_finetuned"}),
            "broken": ("toy", None, {})}
QUESTION = {"question": "pre-trained decoder (fine-tuned) vs. decoder from scratch", "a": "gl_noisy", "b": "gl_clean"}
BROKEN = ("silent", "clipped", "wrong_rate", "missing")  # what happens to the 4 test utterances of `broken`


def speak(code: str, voice: espeak.Voice) -> np.ndarray:
    """16 kHz speech of a GRID code with 0.2 s of silence around it, a whole number of video frames long."""
    s = espeak.synthesize([SPOKEN.get(w, w) for w in grammar.decode(code)], voice, 0)
    x = resample(s.audio, s.sample_rate, SR)
    n = -(-(len(x) + int(0.4 * SR)) // SPF) * SPF
    out = np.zeros(n, np.float32)
    out[int(0.2 * SR) : int(0.2 * SR) + len(x)] = x
    return out


def _roi_row(utt: str, speaker: str, split: str, code: str, audio: np.ndarray) -> dict[str, Any]:
    n_frames = len(audio) // SPF
    return {"utt_id": utt, "speaker": speaker, "split": split, "transcript": " ".join(grammar.decode(code)),
            "n_frames": n_frames, "fps": 25.0, **pack("video", np.zeros((n_frames, 8, 8, 1), np.uint8)),
            **pack("audio", audio), "sample_rate": SR, "audio_pad": 0, "missing_frames": 0}


def merged(tree: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `tree` with `overrides` merged in, section by section."""
    out = copy.deepcopy(tree)
    for k, v in overrides.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def world_params() -> dict[str, Any]:
    """The real params.yaml with the world's overrides: fast CTC, one worker, the three systems."""
    return merged(load_params(REPO / "params.yaml"), {
        "corpus": {"name": "demo"}, "executor": {"workers": 1},
        "asr": {"ctc": {"epochs": 3, "hidden": 32, "conv_channels": 32, "batch_size": 8}},
        "evaluate": {"splits": ["test", "unseen"], "samples_per_split": 2},
        "report": {"samples_per_split": 1, "systems": list(VARIANTS), "questions": [QUESTION]}})


def card(system: str) -> ModelCard:
    kind, family, extra = VARIANTS[system]
    return ModelCard(kind=kind, family=family, name=system, inputs=("video", "spk"), crop={}, train={}, data={},
                     validation={}, extra={**extra, "mean_speaker_embedding": [0.1] * 256}, model={})


def build(root: Path) -> dict[str, Any]:
    """Write ground truth, synthesis and a trained (tiny) ASR under `root`; evaluate everything."""
    mel = MelConfig()
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict[str, Any]]] = {}
    for speaker, splits in LAYOUT.items():
        codes = grammar.sample_codes(sum(splits.values()), [0, int(speaker[1:])])
        i = 0
        for split, n in splits.items():
            for code in codes[i : i + n]:
                rows.setdefault(f"{split}/{speaker}-000.parquet", []).append(
                    _roi_row(f"{speaker}_{code}", speaker, split, code, speak(code, VOICES[speaker])))
            i += n
    manifest = []
    for rel, shard in rows.items():
        shard.sort(key=lambda r: r["utt_id"])
        write_shard(root / "data/roi/shards" / rel, shard)
        manifest += [{"utt_id": r["utt_id"], "corpus": "demo", "split": r["split"], "shard": rel, "row": i}
                     for i, r in enumerate(shard)]
    pd.DataFrame(manifest).to_parquet(root / "data/roi/manifest.parquet")
    test_ids = sorted(r["utt_id"] for rel, s in rows.items() if rel.startswith("test/") for r in s)
    fate = dict(zip(test_ids, BROKEN))
    for rel, shard in rows.items():
        if not (rel.startswith("test/") or rel.startswith("unseen/")):
            continue
        out: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for r in shard:
            gt = np.frombuffer(r["audio"], np.float32).copy()
            gl = griffin_lim(log_mel(gt, mel), mel, n_iter=8)  # a few iterations: a worse "model" than the ceiling
            out["gl_clean"].append({"utt_id": r["utt_id"], **pack("audio", gl), "sample_rate": SR})
            noisy = gl + 0.02 * rng.standard_normal(len(gl)).astype(np.float32)
            out["gl_noisy"].append({"utt_id": r["utt_id"], **pack("audio", noisy), "sample_rate": SR})
            kind, broken, sr = fate.get(r["utt_id"]), gt, SR
            if kind == "missing":
                continue
            if kind == "silent":
                broken = np.zeros_like(gt)
            elif kind == "clipped":
                broken = np.clip(gt * 20, -0.5, 0.5)
            elif kind == "wrong_rate":
                broken, sr = resample(gt, SR, 8000), 8000
            out["broken"].append({"utt_id": r["utt_id"], **pack("audio", broken), "sample_rate": sr})
        for variant, synth_rows in out.items():
            write_shard(root / "data/synth" / variant / rel, synth_rows)
    layout = Layout(root)
    for variant in VARIANTS:
        (layout.synth(variant) / "info.json").write_text(json.dumps({"model_sha256": f"{variant}-sha"}))
        save_card(card(variant), layout.synth(variant))
    params = world_params()
    asr_ctc.train_in_domain(train_asr_stage.configure(Params(params)), layout)
    metrics = {"references": stage.evaluate_references(evaluate_stage.configure(Params(params)), layout)}
    for variant in VARIANTS:
        metrics[variant] = stage.evaluate_system(variant, evaluate_stage.configure(Params(params), variant), layout)
    return {"root": root, "params": params, "layout": layout, "metrics": metrics, "fate": fate,
            "report": report_stage.configure(Params(params))}


_WORLD: dict[str, Any] = {}


@pytest.fixture(scope="session", name="eval_world")
def eval_world_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The evaluated world (built on first use, shared by every test module of the session)."""
    if not _WORLD:
        _WORLD.update(build(tmp_path_factory.mktemp("eval_world")))
    return _WORLD


def with_workers(params: dict[str, Any], workers: int) -> dict[str, Any]:
    """A copy of `params` with another executor size."""
    return merged(params, {"executor": {"workers": workers}})

