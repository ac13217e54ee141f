"""`v2s score`: every metric of one synthesised wav against its reference, as one JSON line.

The same checks, metrics and ASRs as the `evaluate` stage (settings from `params.yaml` when
present in the working directory, the defaults otherwise). Nothing is resampled: a file at
another rate than `audio.sample_rate` is reported, not silently converted. Exit status 0 when
the pair was scored, 1 when an input check left it unscored (the JSON line says why).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from pipeline.audio.io import fit_length, to_mono
from pipeline.audio.mel import MelConfig
from pipeline.config import PARAMS_FILE, load_params
from pipeline.evaluation.asr_sphinx import GridSphinxASR, SphinxConfig
from pipeline.evaluation.asr_sphinx import identity as sphinx_identity
from pipeline.evaluation.checks import CheckConfig, blocks_scoring, check_pair
from pipeline.evaluation.metrics import error_counts, signal_metrics
from pipeline.evaluation.versions import collect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", required=True, type=Path, help="reference (ground-truth) wav")
    parser.add_argument("--hyp", required=True, type=Path, help="synthesised wav, same length and rate")
    parser.add_argument("--text", help="reference transcript: adds WER and CER for each ASR")
    parser.add_argument("--asr-model", type=Path, default=Path("models/asr"),
                        help="trained CTC ASR directory (default models/asr; skipped when absent)")
    parser.add_argument("--no-sphinx", action="store_true", help="skip the pocketsphinx GRID-grammar ASR")


def _read(path: Path) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise SystemExit(f"v2s score: no such file: {path}")
    data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=False)
    return to_mono(data), int(sr)


def _clean(value: Any) -> Any:
    """JSON has no NaN: not-measured values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def score_files(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    """The JSON object `v2s score` prints."""
    mel, checks = MelConfig.from_params(params), CheckConfig.from_params(params)
    ref, ref_sr = _read(args.ref)
    hyp, hyp_sr = _read(args.hyp)
    issues = check_pair(ref, ref_sr, hyp, hyp_sr, checks)
    asrs: dict[str, Any] = {}
    if not args.no_sphinx:
        sphinx_cfg = SphinxConfig.from_params(params)
        asrs["sphinx"] = (sphinx_identity(sphinx_cfg), GridSphinxASR(sphinx_cfg))
    if (args.asr_model / "config.json").is_file():
        from pipeline.evaluation.asr_ctc import CTCASR

        ctc = CTCASR(args.asr_model)
        asrs["ctc"] = (ctc.identity(), ctc)
    out: dict[str, Any] = {"ref": os.fspath(args.ref), "hyp": os.fspath(args.hyp), "scored": not blocks_scoring(issues),
                           "issues": [str(i) for i in issues]}
    if out["scored"]:
        hyp, _ = fit_length(hyp, len(ref))
        scores, errors = signal_metrics(ref, hyp, ref_sr, mel)
        out.update(scores)
        out["issues"] += errors
        out["asr"] = {}
        for name, (_, asr) in asrs.items():
            text = asr.transcribe(hyp, hyp_sr)
            entry: dict[str, Any] = {"transcript": text}
            if args.text:
                c = error_counts(args.text, text)
                entry.update(wer=100.0 * c["word_errors"] / c["ref_words"], cer=100.0 * c["char_errors"] / c["ref_chars"])
            out["asr"][name] = entry
    out["versions"] = collect(params, None, {name: ident for name, (ident, _) in asrs.items()})
    return _clean(out)


def run(args: argparse.Namespace) -> int:
    params = load_params() if PARAMS_FILE.is_file() else {}
    result = score_files(args, params)
    print(json.dumps(result, sort_keys=False))
    return 0 if result["scored"] else 1
