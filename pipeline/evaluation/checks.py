"""Input checks run before any metric: a broken signal gets a named issue, never a quiet zero.

Every scored pair (reference, hypothesis) passes through `check_pair`. Issues whose
`blocks_scoring` is true leave the utterance unscored (metrics NaN) and are counted per kind
in the details files; `clipped` is only flagged: a clipped synthesis is still the model's
output and its metrics should show the damage.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Issue kinds in the order they are reported. `missing` (no synthesis for the utterance) is set
# by the evaluation, `metric_error` (one metric could not be computed, NaN) by the metrics.
ISSUE_KINDS = ("missing", "empty", "too_short", "non_finite", "wrong_rate", "silent", "length_mismatch",
               "clipped", "metric_error")
FLAG_ONLY = frozenset({"clipped", "metric_error"})  # the utterance is still scored


@dataclass(frozen=True)
class Issue:
    """One problem with one signal of a pair: its kind, which signal, and a readable message."""

    kind: str
    which: str  # "reference" or "hypothesis"
    message: str

    @property
    def blocks_scoring(self) -> bool:
        return self.kind not in FLAG_ONLY

    def __str__(self) -> str:
        return f"{self.which} {self.kind}: {self.message}"


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of the input checks: params.yaml `evaluate.checks`, plus `audio.sample_rate`."""

    sample_rate: int  # the rate every metric is defined at
    min_seconds: float  # STOI needs ~30 frames of 25.6 ms after silence removal; PESQ 1/4 s
    silence_dbfs: float  # RMS below this (re. full scale 1.0) counts as silence
    clip_fraction: float  # share of samples on flat runs at the extremes; GRID's own audio has up to 0.3%
    length_tolerance_s: float  # hypothesis may differ from the reference by this much; it is then cut/padded


def clipped_fraction(audio: np.ndarray) -> float:
    """Share of samples sitting on a flat run at the signal's positive or negative extreme.

    Hard clipping leaves plateaus of identical samples at the limit; a loud but unclipped
    signal touches its extreme in isolated samples only, so a plateau test does not confuse
    loudness with clipping.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.size < 2:
        return 0.0
    count = 0
    for extreme in (x.max(), x.min()):
        if extreme == 0:
            continue
        near = np.abs(x - extreme) <= 1e-4 * abs(extreme)
        count += int(np.count_nonzero(near[1:] & near[:-1]))
    return count / x.size


def check_signal(audio: np.ndarray, sample_rate: int, which: str, cfg: CheckConfig) -> list[Issue]:
    """Issues of one signal on its own: empty, too short, NaN/inf, wrong rate, silent, clipped."""
    x = np.asarray(audio)
    if x.size == 0:
        return [Issue("empty", which, "0 samples")]
    issues: list[Issue] = []
    if int(sample_rate) != cfg.sample_rate:
        issues.append(Issue("wrong_rate", which, f"{sample_rate} Hz, metrics are defined at {cfg.sample_rate} Hz; "
                            "resample it first (the rate conversion changes the scores)"))
    seconds = x.size / float(sample_rate)
    if seconds < cfg.min_seconds:
        issues.append(Issue("too_short", which, f"{seconds:.3f} s, the minimum is {cfg.min_seconds} s"))
    finite = np.isfinite(x)
    if not finite.all():
        issues.append(Issue("non_finite", which, f"{int((~finite).sum())} NaN/inf samples"))
        return issues
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms == 0:
        issues.append(Issue("silent", which, "every sample is zero"))
    elif 20 * np.log10(rms) < cfg.silence_dbfs:
        issues.append(Issue("silent", which, f"RMS {20 * np.log10(rms):.1f} dBFS is below {cfg.silence_dbfs} dBFS"))
    frac = clipped_fraction(x)
    if frac > cfg.clip_fraction:
        issues.append(Issue("clipped", which, f"{100 * frac:.2f}% of samples on flat runs at the extremes "
                            f"(limit {100 * cfg.clip_fraction:.2f}%)"))
    return issues


def check_pair(ref: np.ndarray, ref_sr: int, hyp: np.ndarray, hyp_sr: int, cfg: CheckConfig) -> list[Issue]:
    """Issues of a reference/hypothesis pair: each signal's own, then a length mismatch."""
    issues = check_signal(ref, ref_sr, "reference", cfg) + check_signal(hyp, hyp_sr, "hypothesis", cfg)
    if not any(i.kind in ("empty", "wrong_rate") for i in issues):
        diff = (len(hyp) - len(ref)) / float(cfg.sample_rate)
        if abs(diff) > cfg.length_tolerance_s:
            issues.append(Issue("length_mismatch", "hypothesis", f"{len(hyp)} samples vs reference {len(ref)} "
                                f"({diff:+.3f} s, tolerance {cfg.length_tolerance_s} s)"))
    return issues


def blocks_scoring(issues: list[Issue]) -> bool:
    """True when any issue makes the pair unscorable."""
    return any(i.blocks_scoring for i in issues)
