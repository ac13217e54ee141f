"""A small real evaluation world for the evaluation and report tests, built once per session.

Ground truth: GRID-grammar sentences spoken by espeak-ng voices (real synthetic speech, made
offline in a second), laid out as the roi stage's shards. Two "V2A variants" are real degraded
signals, the ground truth's log-mel inverted by Griffin-Lim (one with added noise), and a
third holds broken outputs (silent, clipped, wrong rate, missing) to exercise the checks.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.audio.griffin_lim import griffin_lim
from pipeline.audio.io import resample
from pipeline.audio.mel import MelConfig, log_mel
from pipeline.corpora import espeak, grammar
from pipeline.corpora.demo import SPOKEN
from pipeline.evaluation import stage
from pipeline.shards import pack, write_shard

SR = 16000
SPF = 640  # samples per video frame at 25 fps
VOICES = {"d1": espeak.Voice("en+m3", 165, 40, 50), "d2": espeak.Voice("en+f2", 175, 60, 60),
          "d3": espeak.Voice("en-us+m1", 180, 45, 40)}
LAYOUT = {"d1": {"train": 10, "val": 2, "test": 2}, "d2": {"train": 10, "val": 2, "test": 2}, "d3": {"unseen": 2}}
VARIANTS = {"gl_noisy": {"family": "melspec", "decoder": "scratch", "separate_bn": True},
            "gl_clean": {"family": "melspec", "decoder": "pretrained_finetuned", "separate_bn": True},
            "broken": {"family": "wavegan", "decoder": "scratch", "separate_bn": False}}
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


def params_for(root: Path) -> dict[str, Any]:
    """Params of the world: fast CTC, single-worker executor, the three variants."""
    return {"seed": 0, "corpus": {"name": "demo", "demo": {"protocol": "demo"}}, "executor": {"workers": 1},
            "audio": {"sample_rate": SR}, "v2a": {"variants": VARIANTS},
            "asr": {"ctc": {"epochs": 3, "hidden": 32, "conv_channels": 32, "batch_size": 8}},
            "evaluate": {"splits": ["test", "unseen"], "samples_per_split": 2}, "report": {"samples_per_split": 1}}


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
    for variant in VARIANTS:
        (root / "data/synth" / variant / "info.json").write_text(json.dumps({"model_sha256": f"{variant}-sha"}))
    params = params_for(root)
    paths = stage.Paths.under(root)
    stage.train_asr(params, paths)
    metrics = {"references": stage.evaluate_references(params, paths)}
    for variant in VARIANTS:
        metrics[variant] = stage.evaluate_variant(params, variant, paths)
    return {"root": root, "params": params, "paths": paths, "metrics": metrics, "fate": fate}


_WORLD: dict[str, Any] = {}


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The evaluated world (built on first use, shared by every test module of the session)."""
    if not _WORLD:
        _WORLD.update(build(tmp_path_factory.mktemp("eval_world")))
    return _WORLD


def with_workers(params: dict[str, Any], workers: int) -> dict[str, Any]:
    """A copy of `params` with another executor size."""
    return {**params, "executor": {"workers": workers}}

