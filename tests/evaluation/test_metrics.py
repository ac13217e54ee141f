"""The metrics and the input checks on real speech: known values, monotonicity, refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from eval_world import REPO, speak

from pipeline.config import Params, load_params
from pipeline.corpora import espeak
from pipeline.evaluation.checks import blocks_scoring, check_pair, check_signal, clipped_fraction
from pipeline.evaluation.config import scoring_config
from pipeline.evaluation.metrics import PESQ_WB_MAX, error_counts, feature_metrics, mcd, pesq_wb, signal_metrics, stoi
from pipeline.evaluation.summary import bootstrap_ci, paired_difference, summarize

SR = 16000
SCORING = scoring_config(Params(load_params(REPO / "params.yaml")))
CFG, MEL = SCORING.checks, SCORING.mel


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speak("bbaf2n", espeak.Voice("en+m3", 165, 40, 50))


def _noisy(x: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    return (x + level * np.random.default_rng(seed).standard_normal(len(x))).astype(np.float32)


def test_identity_gives_each_metric_its_best_value(speech):
    assert pesq_wb(speech, speech) == pytest.approx(PESQ_WB_MAX, abs=1e-3)
    assert stoi(speech, speech, SR) == pytest.approx(1.0, abs=1e-6)
    assert stoi(speech, speech, SR, extended=True) == pytest.approx(1.0, abs=1e-6)
    assert mcd(speech, speech, MEL) == pytest.approx(0.0, abs=1e-9)


def test_every_metric_worsens_as_noise_grows(speech):
    mild, strong = (signal_metrics(speech, _noisy(speech, lvl), SR, MEL, 0.2)[0] for lvl in (0.003, 0.03))
    for key in ("pesq_wb", "pesq_nb8k", "pesq_nb16k", "stoi", "estoi", "pesq_wb_aligned", "stoi_aligned", "estoi_aligned"):
        best = 4.65 if key.startswith("pesq") else 1.0
        assert strong[key] < mild[key] < best, key
    assert 0 < mild["mcd"] < strong["mcd"]
    assert mild["offset_ms"] == strong["offset_ms"] == 0.0  # noise does not move the speech
    assert all(mild[f"{k}_aligned"] == mild[k] for k in ("pesq_wb", "stoi", "estoi"))  # nothing removed: the same pair


def test_aligned_scores_undo_a_delay_the_raw_scores_pay_for(speech):
    late = np.concatenate([np.zeros(960, np.float32), speech[:-960]])  # 60 ms
    m, errors = signal_metrics(speech, late, SR, MEL, 0.2)
    assert not errors and m["offset_ms"] == 60.0
    assert m["stoi_aligned"] > 0.99 > m["stoi"] and m["estoi_aligned"] > m["estoi"]
    assert m["pesq_wb_aligned"] == pytest.approx(PESQ_WB_MAX, abs=1e-3)  # the reference itself once aligned
    assert signal_metrics(speech, late, SR, MEL, 0.02)[0]["offset_ms"] <= 20  # never beyond the range searched


def test_mcd_ignores_loudness_because_c0_is_excluded(speech):
    # A gain shifts every log-mel band by the same amount: only c0 (excluded) moves.
    assert mcd(speech, 0.5 * speech, MEL) < 0.05
    assert mcd(speech, _noisy(speech, 0.01), MEL) > 1.0


def test_word_and_character_error_counts():
    c = error_counts("bin blue at f two now", "Bin blew at F two.")  # case and punctuation do not count
    assert (c["word_errors"], c["ref_words"]) == (2, 6)  # one substitution, one deletion
    assert (c["char_errors"], c["ref_chars"]) == (2 + 4, 21)  # "ue" -> "ew", " now" deleted
    empty = error_counts("bin blue", "")
    assert empty["word_errors"] == 2 and empty["char_errors"] == len("bin blue")


@pytest.mark.parametrize("make, kind, words", [
    (lambda x: np.zeros_like(x), "silent", "every sample is zero"),
    (lambda x: 1e-5 * x, "silent", "dBFS"),
    (lambda x: x[:0], "empty", "0 samples"),
    (lambda x: x[: SR // 10], "too_short", "0.100 s"),
    (lambda x: np.where(np.arange(len(x)) == 5, np.nan, x), "non_finite", "1 NaN/inf"),
    (lambda x: np.clip(8 * x, -0.6, 0.6), "clipped", "flat runs"),
])
def test_bad_hypotheses_get_named_issues(speech, make, kind, words):
    issues = check_pair(speech, SR, make(speech).astype(np.float32), SR, CFG)
    found = [i for i in issues if i.kind == kind]
    assert found and words in found[0].message and found[0].which == "hypothesis"
    assert blocks_scoring(issues) == (kind != "clipped")  # clipped output is scored (and flagged)


def test_wrong_rate_and_length_mismatch_are_refused(speech):
    issues = check_pair(speech, SR, speech[::2], 8000, CFG)
    assert [i.kind for i in issues] == ["wrong_rate"] and "8000 Hz" in str(issues[0])
    issues = check_pair(speech, SR, speech[: len(speech) - SR // 5], SR, CFG)
    assert [i.kind for i in issues] == ["length_mismatch"] and "-0.200 s" in str(issues[0])
    assert check_pair(speech, SR, speech[: len(speech) - SR // 100], SR, CFG) == []  # within tolerance


def test_loud_but_unclipped_speech_is_not_called_clipped(speech):
    loud = speech * (1.4 / np.abs(speech).max())  # decoded GRID MP2 peaks above 1.0 like this
    assert clipped_fraction(loud) < 1e-3 and check_signal(loud, SR, "reference", CFG) == []
    # Writing it to 16-bit clips a few peaks, as GRID's own audio is: measured, below the limit.
    assert 0 < clipped_fraction(np.clip(loud, -1, 1)) < CFG.clip_fraction
    assert clipped_fraction(np.clip(4 * loud, -1, 1)) > CFG.clip_fraction


def _rows(values: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame({
        "utt_id": [f"u{i}" for i in range(len(values))], "split": "test",
        "scored": [v is not None for v in values],
        "issue_kinds": [[] if v is not None else ["silent"] for v in values],
        **{m: [np.nan if v is None else v for v in values] for m in ("pesq_wb", "stoi", "estoi", "mcd")},
        "ref_words": [6.0 if v is not None else np.nan for v in values],
        "word_errors_sphinx": [3.0 if v is not None else np.nan for v in values],
        "char_errors_sphinx": [1.0 if v is not None else np.nan for v in values],
        "ref_chars": [20.0 if v is not None else np.nan for v in values]})


def test_unscored_utterances_are_counted_not_averaged_as_zero():
    s = summarize(_rows([2.0, 3.0, None]), ["test"], asrs=("sphinx",))["test"]
    assert (s["n"], s["n_scored"], s["unscored"]["silent"]) == (3, 2, 1)
    assert s["pesq_wb"] == 2.5 and s["wer_sphinx"] == 50.0


def test_bootstrap_intervals_cover_the_mean_and_paired_differences_are_signed():
    a, b = _rows([1.0, 2.0, 3.0, 4.0]), _rows([1.5, 2.5, 3.5, 4.5])
    lo, hi = bootstrap_ci(a, "pesq_wb")
    assert lo <= 2.5 <= hi and lo < hi
    diff, dlo, dhi, n = paired_difference(a, b, "pesq_wb")
    assert diff == pytest.approx(0.5) and dlo == pytest.approx(0.5) and dhi == pytest.approx(0.5) and n == 4


def test_feature_metrics_of_known_predictions():
    truth = {"units": np.array([1, 2, 3, 4]), "f0": np.array([0.0, 100.0, 200.0, 0.0], np.float32),
             "voiced": np.array([False, True, True, False]), "energy": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}
    pred = {"units": np.array([1, 2, 0, 0]), "f0": np.array([120.0, 110.0, 0.0, 0.0], np.float32),
            "voiced": np.array([True, True, False, False]), "energy": np.array([1.5, 2.0, 3.0, 3.0], np.float32)}
    m = feature_metrics(pred, truth)
    # F0 error only where both say voiced (frame 1: 10 Hz); frames 0 and 2 are voicing errors
    assert m == {"unit_accuracy": 0.5, "f0_rmse": 10.0, "voicing_error": 0.5, "energy_mae": 0.375}
    assert feature_metrics({"units": pred["units"]}, truth) == {"unit_accuracy": 0.5}  # a variant without prosody
    assert np.isnan(feature_metrics({**pred, "voiced": np.zeros(4, bool)}, truth)["f0_rmse"])
    with pytest.raises(ValueError, match="shape"):
        feature_metrics({"units": np.zeros(3)}, truth)
