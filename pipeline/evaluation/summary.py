"""Headline numbers from per-utterance scores: means, corpus error rates, counts, bootstrap CIs.

One function turns a per-utterance table into the numbers of a metrics file and of the report,
so the two can never disagree. Unscored utterances are counted by issue kind, never averaged
in as zeros.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation.checks import FLAG_ONLY, ISSUE_KINDS
from pipeline.evaluation.metrics import FEATURE_METRICS, PESQ_METRICS, SIGNAL_METRICS

ASRS = ("sphinx", "ctc", "whisper")
BOOTSTRAP = 1000  # resamples for the 95% intervals
MEANS = SIGNAL_METRICS + FEATURE_METRICS  # headline numbers that are means over utterances
# A metrics file (a DVC metric: one `dvc exp show` column per number) holds these per split, at most 12
# with the two default ASRs: the PESQ conventions, STOI, ESTOI, WER per ASR, the sync offset and a
# feature-predicting model's feature scores. Counts, MCD, CER, the aligned scores, versions and provenance go to the details file beside it.
VIDEO_USE_METRICS = ("stoi", "estoi")  # also scored on speech from another utterance's video (`<metric>_deranged`)
METRICS_FILE_KEYS = (*PESQ_METRICS, "stoi", "estoi", *(f"wer_{a}" for a in ASRS), "offset_ms", *FEATURE_METRICS)


def headline_keys(asrs: Sequence[str] = ASRS) -> list[str]:
    """Names of the headline numbers, in display order (the feature metrics only for systems predicting features)."""
    return [*SIGNAL_METRICS, *(f"{k}_{a}" for a in asrs for k in ("wer", "cer")), *FEATURE_METRICS]


def _ratio(df: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-utterance numerator and denominator of a headline number, and its scale.

    A mean metric is sum(value) / count; an error rate is sum(errors) / sum(reference length),
    so one vectorised bootstrap serves both. Rows where the metric is missing drop out.
    """
    if key in MEANS:
        v = df[key].to_numpy(dtype=float)
        ok = np.isfinite(v)
        return np.where(ok, v, 0.0), ok.astype(float), 1.0
    unit = "word" if key.startswith("wer_") else "char"
    errors = df[f"{unit}_errors_{key.split('_', 1)[1]}"].to_numpy(dtype=float)
    total = df[f"ref_{unit}s"].to_numpy(dtype=float)
    ok = np.isfinite(errors)
    return np.where(ok, errors, 0.0), np.where(ok, total, 0.0), 100.0


def _stat(num: np.ndarray, den: np.ndarray, scale: float) -> np.ndarray | float:
    with np.errstate(invalid="ignore", divide="ignore"):
        return scale * num.sum(-1) / np.where(den.sum(-1) > 0, den.sum(-1), np.nan)


def _values(df: pd.DataFrame, asrs: Sequence[str]) -> dict[str, float]:
    """Headline numbers of already-scored rows (signal means; corpus-level WER/CER in %)."""
    measured = {k: k in df if k in MEANS else f"word_errors_{k.split('_', 1)[1]}" in df for k in headline_keys(asrs)}
    keys = [k for k, present in measured.items() if present]
    return {k: float(_stat(*_ratio(df, k))) for k in keys}


def summarize_split(df: pd.DataFrame, asrs: Sequence[str] = ASRS) -> dict[str, Any]:
    """Headline numbers and issue counts of one split's per-utterance rows."""
    scored = df[df["scored"]]
    kinds = [k for ks in df["issue_kinds"] for k in ks]
    out: dict[str, Any] = {"n": int(len(df)), "n_scored": int(len(scored))}
    out.update({k: _round(v) for k, v in _values(scored, asrs).items()})
    use = {k: video_use(df, k) for k in VIDEO_USE_METRICS}
    if any(u is not None for u in use.values()):  # details only: not a headline number of the metrics file
        out["video_use"] = {k: {"difference": _round(u[0]), "ci": [_round(u[1]), _round(u[2])], "n": u[3]}
                            for k, u in use.items() if u is not None}
    out["unscored"] = {k: kinds.count(k) for k in ISSUE_KINDS if k not in FLAG_ONLY}
    out["flagged"] = {k: kinds.count(k) for k in ISSUE_KINDS if k in FLAG_ONLY}
    return out


def summarize(df: pd.DataFrame, splits: Sequence[str], asrs: Sequence[str] = ASRS) -> dict[str, dict[str, Any]]:
    """`{split: summary}` for every split present in `df`."""
    return {s: summarize_split(df[df["split"] == s], asrs) for s in splits if (df["split"] == s).any()}


def metrics_file(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The METRICS_FILE_KEYS of each split of `summarize`'s output."""
    return {split: {k: v[k] for k in METRICS_FILE_KEYS if k in v} for split, v in summary.items()}


def bootstrap_ci(df: pd.DataFrame, key: str, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of one headline number, resampling scored utterances."""
    num, den, scale = _ratio(df[df["scored"]], key)
    if len(num) < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(num), (BOOTSTRAP, len(num)))
    lo, hi = np.nanpercentile(_stat(num[idx], den[idx], scale), [2.5, 97.5])
    return float(lo), float(hi)


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, key: str, seed: int = 0) -> tuple[float, float, float, int]:
    """`b - a` on the utterances both scored, with a paired 95% bootstrap interval and the count."""
    common = sorted(set(a.loc[a["scored"], "utt_id"]) & set(b.loc[b["scored"], "utt_id"]))
    if not common:
        return float("nan"), float("nan"), float("nan"), 0
    na, da, scale = _ratio(a.set_index("utt_id").loc[common], key)
    nb, db, _ = _ratio(b.set_index("utt_id").loc[common], key)
    both = (da > 0) & (db > 0)  # a metric missing on either side drops the utterance from both
    na, da, nb, db = na * both, da * both, nb * both, db * both
    diff = float(_stat(nb, db, scale) - _stat(na, da, scale))
    if len(common) < 2:
        return diff, float("nan"), float("nan"), len(common)
    idx = np.random.default_rng(seed).integers(0, len(common), (BOOTSTRAP, len(common)))
    stats = _stat(nb[idx], db[idx], scale) - _stat(na[idx], da[idx], scale)
    lo, hi = np.nanpercentile(stats, [2.5, 97.5])
    return diff, float(lo), float(hi), int(both.sum())


def video_use(df: pd.DataFrame, key: str = "estoi", seed: int = 0) -> tuple[float, float, float, int] | None:
    """`key` of the speech from each utterance's own video minus that from another utterance's video, paired over
    the scored utterances, with its 95% interval and count (`paired_difference`); None without such scores.
    Not above zero: the model says as much from the wrong lips as from the right ones."""
    other = f"{key}_deranged"
    if other not in df or not df[other].notna().any():
        return None
    return paired_difference(df.assign(**{key: df[other]}), df, key, seed)


def _round(v: float) -> float | None:
    # JSON has no NaN; None says "not measured" in dvc metrics show.
    return None if v is None or not np.isfinite(v) else round(float(v), 4)
