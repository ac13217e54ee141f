"""`v2s score`: every metric of one synthesised wav against its reference, as one JSON line: PESQ under each
paper's convention (`pesq_wb`, `pesq_nb8k`, `pesq_nb16k`), STOI, ESTOI, MCD, the estimated offset (`offset_ms`)
and the scores once it is removed (`*_aligned`), and what each ASR heard.

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
import soundfile as sf

from pipeline.audio.io import to_mono
from pipeline.config import PARAMS_FILE, ConfigError, Params, load_params
from pipeline.evaluation.config import ScoringConfig, scoring_config
from pipeline.evaluation.evaluate import Settings, asr_identity, has_ctc_model, score_pair
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
    parser.add_argument("--max-offset-ms", type=float,
                        help="sync search range for offset_ms and the *_aligned scores (default: evaluate.max_offset_ms)")


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


def score_files(args: argparse.Namespace, scoring: ScoringConfig) -> dict[str, Any]:
    """The JSON object `v2s score` prints."""
    # The command line chooses the ASRs: sphinx unless --no-sphinx, the CTC model when its directory holds one.
    ctc_dir = args.asr_model if has_ctc_model(args.asr_model) else None
    max_offset_s = scoring.max_offset_s if args.max_offset_ms is None else args.max_offset_ms / 1000
    s = Settings(scoring.mel, scoring.checks, None if args.no_sphinx else scoring.sphinx,
                 None if ctc_dir is None else os.fspath(ctc_dir), None, max_offset_s,
                 scoring.whisper if scoring.whisper.enabled else None)
    ref, ref_sr = _read(args.ref)
    hyp, hyp_sr = _read(args.hyp)
    result = score_pair(ref, ref_sr, hyp, hyp_sr, args.text, s)
    out: dict[str, Any] = {"ref": os.fspath(args.ref), "hyp": os.fspath(args.hyp), "scored": result.scored,
                           "issues": [str(i) for i in result.issues]}
    if result.scored:
        out.update(result.metrics)
        out["issues"] += result.metric_errors
        out["asr"] = {}
        for name, text in result.transcripts.items():
            entry: dict[str, Any] = {"transcript": text}
            if name in result.errors:
                c = result.errors[name]
                entry.update(wer=100.0 * c["word_errors"] / c["ref_words"], cer=100.0 * c["char_errors"] / c["ref_chars"])
            out["asr"][name] = entry
    out["versions"] = collect(s.mel, s.checks, None, {name: asr_identity(name, s) for name in s.asrs}, s.max_offset_s)
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
