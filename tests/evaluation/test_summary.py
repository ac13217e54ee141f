"""The video-use difference: own video minus another utterance's, paired over scored utterances."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.summary import summarize_split, video_use


def _scores(gain: float, n: int = 20) -> pd.DataFrame:
    estoi = np.linspace(0.2, 0.6, n)
    return pd.DataFrame({"utt_id": [f"u{i:02d}" for i in range(n)], "scored": [True] * (n - 1) + [False],
                         "issue_kinds": [[]] * (n - 1) + [["silent"]], "estoi": estoi, "estoi_deranged": estoi - gain,
                         "stoi": estoi, "stoi_deranged": estoi})


def test_the_video_use_difference_is_paired_over_scored_utterances_only():
    diff, lo, hi, n = video_use(_scores(0.1), "estoi")
    assert diff == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1) and n == 19
    assert video_use(_scores(0.1), "stoi")[:3] == pytest.approx((0.0, 0.0, 0.0))
    assert video_use(_scores(0.1).drop(columns=["estoi_deranged"]), "estoi") is None


def test_the_summary_carries_it_only_where_the_check_ran():
    summary = summarize_split(_scores(0.05), asrs=())
    assert summary["video_use"]["estoi"]["difference"] == pytest.approx(0.05)
    assert summary["video_use"]["estoi"]["n"] == 19 and summary["video_use"]["stoi"]["difference"] == 0
    assert "video_use" not in summarize_split(_scores(0.05).drop(columns=["estoi_deranged", "stoi_deranged"]), asrs=())
