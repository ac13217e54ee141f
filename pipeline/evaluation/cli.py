"""`v2s score`: every metric of one synthesised wav against its reference, as one JSON line: the pipeline's
metrics (`pesq` is wide-band), PESQ under each paper's convention (`pesq_wb`, `pesq_nb8k`, `pesq_nb16k`) and,
under `sync`, the estimated offset and the scores once it is removed.

The same scoring function, checks, metrics and ASRs as the `evaluate` stages, with the settings
of `params.yaml` in the working directory (the repository's own when there is none). Nothing
is resampled: a file at another rate than `audio.sample_rate` is reported, not silently
converted. Exit status 0 when the pair was scored, 1 when an input check left it unscored (the
JSON line says why), 2 when `params.yaml` does not parse.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pesq as pesq_pkg
import soundfile as sf

from pipeline.audio.io import fit_length, to_mono
from pipeline.config import PARAMS_FILE, ConfigError, Params, load_params
from pipeline.evaluation.config import ScoringConfig, scoring_config
from pipeline.evaluation.evaluate import Settings, asr_identity, has_ctc_model, score_pair
from pipeline.evaluation.metrics import PESQ_CONVENTIONS, aligned, estimate_offset, pesq_wb, stoi
from pipeline.evaluation.versions import collect

# Where the defaults live when the working directory has no params.yaml: the repository's own.
REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", required=True, type=Path, help="reference (ground-truth) wav")
    parser.add_argument("--hyp", required=True, type=Path, help="synthesised wav, same length and rate")
    parser.add_argument("--text", help="reference transcript: adds WER and CER for each ASR")
    parser.add_argument("--asr-model", type=Path, default=Path("models/asr"),
                        help="trained CTC ASR directory (default models/asr; skipped when absent)")
    parser.add_argument("--no-sphinx", action="store_true", help="skip the pocketsphinx GRID-grammar ASR")
    parser.add_argument("--max-offset-ms", type=float, default=200.0,
                        help="sync search range for the aligned scores (default 200 ms, 5 video frames: our choice, "
                             "beyond the audio-video offsets of GRID and TCD-TIMIT that Niu & Mak correct)")


def _read(path: Path) -> tuple[np.ndarray, int]:
    """The file's audio, or exit with a one-line reason (checked for both files before any scoring)."""
    if not path.is_file():
        raise SystemExit(f"v2s score: no such file: {path}")
    try:
        data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as exc:  # an empty file, a video, any non-audio bytes
        raise SystemExit(f"v2s score: {path} is not an audio file soundfile reads ({str(exc).splitlines()[0]}); "
                         "give a wav (extract a video's track first)") from None
    return to_mono(data), int(sr)


def _clean(value: Any) -> Any:
    """JSON has no NaN: not-measured values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def pesq_conventions(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, issues: list[str]) -> dict[str, float]:
    """PESQ under each paper's convention (metrics.PESQ_CONVENTIONS); one that fails is NaN and named in `issues`."""
    hyp, _ = fit_length(np.asarray(hyp, dtype=np.float32), len(ref))
    out = {}
    for name, fn in PESQ_CONVENTIONS.items():
        try:
            out[name] = fn(ref, hyp, sample_rate)
        except (pesq_pkg.PesqError, ValueError) as exc:
            out[name] = float("nan")
            issues.append(f"{name}: {type(exc).__name__}: {exc}")
    return out


def sync_scores(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, max_offset_s: float, issues: list[str]) -> dict[str, float]:
    """The offset of `hyp` against `ref` (ms, positive: late) and STOI, ESTOI and wide-band PESQ over their
    overlap once it is removed: a synthesis that is right but late is not scored as wrong."""
    offset = estimate_offset(ref, hyp, sample_rate, max_offset_s)
    r, h = aligned(ref, np.asarray(hyp, dtype=np.float32), offset, sample_rate)
    out = {"offset_ms": round(1000 * offset, 1), "stoi": stoi(r, h, sample_rate), "estoi": stoi(r, h, sample_rate, extended=True)}
    try:
        out["pesq_wb"] = pesq_wb(r, h, sample_rate)
    except (pesq_pkg.PesqError, ValueError) as exc:
        out["pesq_wb"] = float("nan")
        issues.append(f"sync pesq_wb: {type(exc).__name__}: {exc}")
    return out


def score_files(args: argparse.Namespace, scoring: ScoringConfig) -> dict[str, Any]:
    """The JSON object `v2s score` prints."""
    # The command line chooses the ASRs: sphinx unless --no-sphinx, the CTC model when its directory holds one.
    ctc_dir = args.asr_model if has_ctc_model(args.asr_model) else None
    s = Settings(scoring.mel, scoring.checks, None if args.no_sphinx else scoring.sphinx,
                 None if ctc_dir is None else os.fspath(ctc_dir), None)
    ref, ref_sr = _read(args.ref)
    hyp, hyp_sr = _read(args.hyp)
    result = score_pair(ref, ref_sr, hyp, hyp_sr, args.text, s)
    out: dict[str, Any] = {"ref": os.fspath(args.ref), "hyp": os.fspath(args.hyp), "scored": result.scored,
                           "issues": [str(i) for i in result.issues]}
    if result.scored:
        out.update(result.metrics)
        out.update(pesq_conventions(ref, hyp, ref_sr, out["issues"]))
        out["sync"] = sync_scores(ref, hyp, ref_sr, args.max_offset_ms / 1000, out["issues"])
        out["issues"] += result.metric_errors
        out["asr"] = {}
        for name, text in result.transcripts.items():
            entry: dict[str, Any] = {"transcript": text}
            if name in result.errors:
                c = result.errors[name]
                entry.update(wer=100.0 * c["word_errors"] / c["ref_words"], cer=100.0 * c["char_errors"] / c["ref_chars"])
            out["asr"][name] = entry
    out["versions"] = collect(s.mel, s.checks, None, {name: asr_identity(name, s) for name in s.asrs})
    return _clean(out)


def run(args: argparse.Namespace) -> int:
    try:
        scoring = scoring_config(Params(load_params(PARAMS_FILE if PARAMS_FILE.is_file() else REPO_PARAMS)))
    except ConfigError as exc:
        print(f"v2s score: {exc}", file=sys.stderr)
        return 2
    result = score_files(args, scoring)
    print(json.dumps(result, sort_keys=False))
    return 0 if result["scored"] else 1
