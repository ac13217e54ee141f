"""The objective metrics, each defined once: PESQ (three conventions), STOI, ESTOI, MCD, the sync offset and
the scores after it, WER and CER, and the errors of a model's predicted speech features.

- PESQ, under each convention the papers use (their numbers compare only under the same one):
  `pesq_wb`, ITU-T P.862.2 wide-band MOS-LQO at 16 kHz (range about 1.04 to 4.64; SVTS, the
  V2A/AV2A papers); `pesq_nb8k`, P.862 narrow-band with the P.862.1 mapping on both signals
  resampled to 8 kHz (VCA-GAN); `pesq_nb16k`, the same narrow-band model fed 16 kHz (Lip2Wav).
  All from the `pesq` package, on float signals (`pesq` level-aligns internally).
- Sync: `offset_ms`, how late the synthesis is against the reference (negative: early), the lag
  within +-`max_offset_s` that maximises the correlation of their log-energy envelopes; then
  `pesq_wb_aligned`, `stoi_aligned` and `estoi_aligned` over the overlap once it is removed, so
  that a right but shifted synthesis is not scored as wrong (Niu & Mak, arXiv 2303.00502, on the
  audio-video offsets of GRID and TCD-TIMIT).
- STOI / ESTOI: `pystoi` (resamples to 10 kHz internally, drops silent frames of the
  reference). Range 0..1 (ESTOI can go slightly negative).
- MCD (dB): mel-cepstral distortion between aligned frames,
  `10 / ln 10 * sqrt(2 * sum_{d=1..13} (c_d - c'_d)^2)`, averaged over all frames, where
  `c` are the first 13 coefficients (c0, the energy term, excluded) of the DCT-II of the
  project's natural-log mel amplitude spectrum (`pipeline.audio.mel`, 80 bands, 10 ms hop),
  scaled so that the log spectrum is `c0/2 + sum_k c_k cos(pi k (n + 1/2) / N)`: the cepstrum
  convention MCD's constant assumes (an orthonormal DCT would inflate MCD by sqrt(N/2), 6.3x).
  These are MFCC-like cepstra, not SPTK mel-generalised cepstra, so values are comparable
  within this project only. No DTW: synthesis and reference are the same length
  by construction (the checks reject larger mismatches), so frames are compared one to one.
- WER / CER: Levenshtein edit counts (`jiwer`) on normalised text (lower case, letters,
  digits and apostrophes, single spaces). CER counts the spaces between words. Corpus-level
  rates are total edits over total reference words/characters.
- Predicted features (models that predict them on the way to speech, e.g. LTS), against the
  feature stages' ground truth of the same utterance: unit accuracy (share of 20 ms k-means
  units predicted exactly), F0 RMSE in Hz over the frames both call voiced (a voicing mistake is
  counted by the voicing error instead, as the F0 / voicing-decision-error split of the pitch
  literature does), voicing error (share of mel frames whose voiced/unvoiced decision differs)
  and energy MAE (mean absolute error of the L2 norm of the linear mel frame).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jiwer
import numpy as np
import pesq as pesq_pkg
import scipy.fft
from pystoi import stoi as _stoi

from pipeline.audio.io import fit_length, resample
from pipeline.audio.mel import MelConfig, log_mel

PESQ_WB_MAX = 4.644  # P.862.2 MOS-LQO mapping of a perfect score
N_CEPSTRA = 13
PESQ_METRICS = ("pesq_wb", "pesq_nb8k", "pesq_nb16k")
SYNC_METRICS = ("offset_ms", "pesq_wb_aligned", "stoi_aligned", "estoi_aligned")
SIGNAL_METRICS = (*PESQ_METRICS, "stoi", "estoi", "mcd", *SYNC_METRICS)
FEATURE_METRICS = ("unit_accuracy", "f0_rmse", "voicing_error", "energy_mae")


def pesq_wb(ref: np.ndarray, hyp: np.ndarray, sample_rate: int = 16000) -> float:
    """Wide-band PESQ (P.862.2); raises `pesq.PesqError` when the reference has no speech."""
    if sample_rate != 16000:
        raise ValueError(f"wide-band PESQ is defined at 16000 Hz, got {sample_rate}")
    return float(pesq_pkg.pesq(sample_rate, _f64(ref), _f64(hyp), "wb"))


def pesq_nb(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, at: int) -> float:
    """Narrow-band PESQ (P.862 with the P.862.1 MOS-LQO mapping) computed at `at` Hz: 8000 as VCA-GAN
    reports it (both signals resampled to 8 kHz first), 16000 as Lip2Wav does (P.862's 16 kHz input)."""
    if at not in (8000, 16000):
        raise ValueError(f"narrow-band PESQ runs at 8000 or 16000 Hz, not {at}")
    return float(pesq_pkg.pesq(at, _f64(resample(ref, sample_rate, at)), _f64(resample(hyp, sample_rate, at)), "nb"))


ENVELOPE_RATE = 1000  # Hz: offsets are found to the millisecond


def _envelope(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Zero-mean log energy at ENVELOPE_RATE (5 ms moving RMS): what lines two renditions of one utterance up,
    whatever their waveforms (a synthesis need not share the reference's phase)."""
    hop = sample_rate // ENVELOPE_RATE
    n = len(audio) // hop
    power = np.square(np.asarray(audio[: n * hop], np.float64)).reshape(n, hop).mean(axis=1)
    power = np.convolve(power, np.ones(5) / 5, mode="same")
    env = np.log(power + 1e-8)
    return env - env.mean()


def estimate_offset(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, max_offset_s: float) -> float:
    """Seconds by which `hyp` lags `ref` (negative: leads), within +-max_offset_s: the lag maximising the
    normalised cross-correlation of their log-energy envelopes over the overlap."""
    a, b = _envelope(ref, sample_rate), _envelope(hyp, sample_rate)
    limit = min(int(round(max_offset_s * ENVELOPE_RATE)), len(a) - 1, len(b) - 1)
    best, best_lag = -np.inf, 0
    for lag in range(-limit, limit + 1):
        x, y = (a[: len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: len(b) + lag])
        n = min(len(x), len(y))
        x, y = x[:n] - x[:n].mean(), y[:n] - y[:n].mean()
        denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
        score = np.dot(x, y) / denom if denom > 0 else -np.inf
        if score > best:
            best, best_lag = score, lag
    return best_lag / ENVELOPE_RATE


def aligned(ref: np.ndarray, hyp: np.ndarray, offset_s: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """`ref` and `hyp` over their overlap once `hyp` is moved back by `offset_s`."""
    k = int(round(offset_s * sample_rate))
    if k >= 0:
        hyp = hyp[k:]
    else:
        ref = ref[-k:]
    n = min(len(ref), len(hyp))
    return ref[:n], hyp[:n]


def stoi(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI with `extended=True`) of `hyp` against `ref`."""
    return float(_stoi(_f64(ref), _f64(hyp), sample_rate, extended=extended))


def mel_cepstra(audio: np.ndarray, cfg: MelConfig, n_ceps: int = N_CEPSTRA) -> np.ndarray:
    """Cepstra c1..c_n (c0 dropped) per frame: (n_ceps, frames) from the shared log-mel."""
    spectrum = log_mel(audio, cfg)
    return scipy.fft.dct(spectrum, type=2, axis=0)[1 : n_ceps + 1] / spectrum.shape[0]


def mcd(ref: np.ndarray, hyp: np.ndarray, cfg: MelConfig, n_ceps: int = N_CEPSTRA) -> float:
    """Mel-cepstral distortion in dB over frame-aligned signals (see module docstring)."""
    cr, ch = mel_cepstra(ref, cfg, n_ceps), mel_cepstra(hyp, cfg, n_ceps)
    n = min(cr.shape[1], ch.shape[1])
    dist = np.sqrt(2.0 * np.sum((cr[:, :n] - ch[:, :n]) ** 2, axis=0))
    return float(10.0 / np.log(10.0) * dist.mean())


def signal_metrics(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, cfg: MelConfig,
                   max_offset_s: float) -> tuple[dict[str, float], list[str]]:
    """SIGNAL_METRICS of `hyp` (cut/padded to the reference length) against `ref`; the sync offset is
    searched within +-`max_offset_s`.

    Returns the scores and a list of errors: a metric that cannot be computed (e.g. PESQ
    finding no utterance in the reference) is NaN and named in the errors, never zero.
    """
    hyp, _ = fit_length(np.asarray(hyp, dtype=np.float32), len(ref))
    offset = estimate_offset(ref, hyp, sample_rate, max_offset_s)
    ref_al, hyp_al = aligned(ref, hyp, offset, sample_rate)
    scores: dict[str, float] = {"offset_ms": round(1000 * offset, 1)}
    errors: list[str] = []
    for name, fn in (("pesq_wb", lambda: pesq_wb(ref, hyp, sample_rate)),
                     ("pesq_nb8k", lambda: pesq_nb(ref, hyp, sample_rate, 8000)),
                     ("pesq_nb16k", lambda: pesq_nb(ref, hyp, sample_rate, 16000)),
                     ("stoi", lambda: stoi(ref, hyp, sample_rate)),
                     ("estoi", lambda: stoi(ref, hyp, sample_rate, extended=True)),
                     ("mcd", lambda: mcd(ref, hyp, cfg)),
                     ("pesq_wb_aligned", lambda: pesq_wb(ref_al, hyp_al, sample_rate)),
                     ("stoi_aligned", lambda: stoi(ref_al, hyp_al, sample_rate)),
                     ("estoi_aligned", lambda: stoi(ref_al, hyp_al, sample_rate, extended=True))):
        if offset == 0 and name.endswith("_aligned"):  # nothing to remove: the pair is the one just scored
            scores[name] = scores[name.removesuffix("_aligned")]
            continue
        try:
            scores[name] = fn()
        except (pesq_pkg.PesqError, ValueError, RuntimeError) as exc:
            scores[name] = float("nan")
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return scores, errors


def feature_metrics(pred: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]) -> dict[str, float]:
    """FEATURE_METRICS of the predicted streams in `pred` (units; f0 in Hz with voiced; energy) against
    `truth`, equal lengths; only the metrics whose streams were predicted."""
    for key, p in pred.items():
        if np.shape(p) != np.shape(truth[key]):
            raise ValueError(f"predicted {key} has shape {np.shape(p)}, the ground truth {np.shape(truth[key])}")
    out: dict[str, float] = {}
    if "units" in pred:
        out["unit_accuracy"] = float(np.mean(pred["units"] == truth["units"]))
    if "f0" in pred:
        pv, tv = np.asarray(pred["voiced"], bool), np.asarray(truth["voiced"], bool)
        both = pv & tv
        diff = pred["f0"][both].astype(np.float64) - truth["f0"][both]
        out["f0_rmse"] = float(np.sqrt(np.mean(diff ** 2))) if both.any() else float("nan")
        out["voicing_error"] = float(np.mean(pv != tv))
    if "energy" in pred:
        out["energy_mae"] = float(np.mean(np.abs(pred["energy"].astype(np.float64) - truth["energy"])))
    return out


_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def normalize_text(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: the form WER/CER are computed on."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def reference_lengths(ref_text: str) -> tuple[int, int]:
    """Words and characters of a normalised reference transcript (the WER and CER denominators)."""
    ref = normalize_text(ref_text)
    if not ref:
        raise ValueError("empty reference transcript: WER is undefined")
    return len(ref.split()), len(ref)


def error_counts(ref_text: str, hyp_text: str) -> dict[str, int]:
    """Word and character edit counts of a hypothesis transcript against the reference."""
    n_words, n_chars = reference_lengths(ref_text)
    ref, hyp = normalize_text(ref_text), normalize_text(hyp_text)
    if not hyp:
        return {"word_errors": n_words, "ref_words": n_words, "char_errors": n_chars, "ref_chars": n_chars}
    w = jiwer.process_words(ref, hyp)
    c = jiwer.process_characters(ref, hyp)
    return {"word_errors": w.substitutions + w.deletions + w.insertions, "ref_words": n_words,
            "char_errors": c.substitutions + c.deletions + c.insertions, "ref_chars": n_chars}


def rate(errors: Any, total: Any) -> float:
    """Corpus-level error rate in percent (NaN when nothing was scored)."""
    errors, total = float(np.nansum(errors)), float(np.nansum(total))
    return 100.0 * errors / total if total > 0 else float("nan")


def _f64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)
