"""The derangement behind the video-use check: every utterance spoken from another one's video, fitted to its length."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.inference.synthesis import _frames, derangement


@pytest.mark.parametrize("n", [2, 3, 7, 200])
def test_a_derangement_moves_every_utterance_and_is_the_same_for_every_system(n):
    order = derangement(n, "test/s1-000.parquet")
    assert sorted(order) == list(range(n)) and all(j != i for i, j in enumerate(order))
    assert order == derangement(n, "test/s1-000.parquet")  # seeded by the shard alone, never by the model


def test_each_shard_gets_its_own_derangement_and_a_lone_utterance_none():
    assert derangement(50, "test/s1-000.parquet") != derangement(50, "test/s2-000.parquet")
    assert derangement(1, "test/s1-000.parquet") is None and derangement(0, "x") is None


def test_another_clip_is_cut_or_its_last_frame_held_to_the_utterance_length():
    video = np.arange(5 * 2 * 2).reshape(5, 2, 2)
    np.testing.assert_array_equal(_frames(video, 3), video[:3])
    padded = _frames(video, 7)
    assert padded.shape == (7, 2, 2)
    np.testing.assert_array_equal(padded[5:], np.stack([video[4], video[4]]))
