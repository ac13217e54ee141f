"""Prosody: F0, voicing and energy on the mel grid, and speaker statistics from train only."""
from __future__ import annotations

import json

import numpy as np
import paths
import pytest
from roi_samples import SR, grid_audio, one_torch_thread, tone, write_roi  # noqa: F401 - autouse fixture

from pipeline.audio.mel import AudioConfig
from pipeline.config import Params, load_params
from pipeline.executor import Executor
from pipeline.features.prosody import ProsodyConfig, energy, pitch, prosody, run_prosody
from pipeline.features.stage import Utterance, UttKey
from pipeline.shards import ShardReader, list_shards, unpack

PARAMS = Params(load_params(paths.PARAMS))
MEL = PARAMS.parse("audio", AudioConfig).mel
CFG = PARAMS.parse("prosody", ProsodyConfig)


def _framed(signal: np.ndarray, lead: float = 0.5, trail: float = 0.5) -> np.ndarray:
    """`signal` between pauses, all over faint noise (not digital silence), 16 kHz."""
    audio = np.concatenate([np.zeros(round(lead * SR)), signal, np.zeros(round(trail * SR))])
    return (audio + 1e-4 * np.random.default_rng(0).standard_normal(len(audio))).astype(np.float32)


def test_pitch_and_voicing_of_a_tone_between_pauses():
    audio = _framed(tone(140.0, 1.0))  # 2 s: tone from mel frame 50 to 150
    key = UttKey("u", "s", "train", "train/s-000.parquet", 0, 50, 25.0)
    cols = prosody(Utterance(key, audio, SR), MEL, CFG)
    f0, voiced, e = (unpack(cols, c) for c in ("f0", "voiced", "energy"))
    assert f0.shape == voiced.shape == e.shape == (200,)  # 4 mel frames per video frame
    assert voiced.dtype == np.bool_ and f0.dtype == e.dtype == np.float32
    assert voiced[55:145].all() and np.abs(f0[55:145] / 140.0 - 1).max() < 0.02
    assert not voiced[:45].any() and not voiced[155:].any() and (f0[~voiced] == 0).all()
    assert 47 <= np.flatnonzero(voiced)[0] <= 53  # onset on the mel grid
    assert e[60:140].min() > 100 * e[:40].max()


def test_energy_is_the_norm_of_the_magnitude_mel():
    audio = _framed(tone(200.0, 0.5), 0.2, 0.2)
    e1, e2 = energy(audio, MEL), energy(2 * audio, MEL)
    loud = e1 > 0.1 * e1.max()
    np.testing.assert_allclose(e2[loud] / e1[loud], 2.0, rtol=1e-3)  # magnitude: linear in amplitude (power would be 4x)
    assert len(e1) == len(audio) // MEL.hop_length


def test_low_level_hum_in_pauses_is_not_voiced():
    hum = tone(50.0, 2.0, amplitude=0.003, harmonics=3)  # mains hum, 40 dB below the speech
    audio = _framed(tone(120.0, 1.0)) + hum
    e = energy(audio, MEL)
    _, voiced = pitch(audio, e, MEL, CFG)
    assert not voiced[:45].any() and not voiced[155:].any() and voiced[55:145].all()


def _utts(f0_test: float = 150.0, f0_unseen: float = 260.0) -> list:
    return ([(f"a_{i}", "a", "train", _framed(tone(110.0 + 10 * i, 0.6), 0.2, 0.2)) for i in range(2)]
            + [("b_0", "b", "train", _framed(tone(220.0, 0.6), 0.2, 0.2))]
            + [("a_9", "a", "test", _framed(tone(f0_test, 0.6), 0.2, 0.2)),
               ("c_0", "c", "unseen", _framed(tone(f0_unseen, 0.8), 0.2, 0.2))])


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prosody")
    roi = write_roi(tmp / "roi", _utts())
    outcome = run_prosody(MEL, CFG, Executor(workers=1), roi, tmp / "prosody")
    return tmp, roi, outcome


def test_stage_is_aligned_with_the_roi_shards(stage):
    tmp, roi, outcome = stage
    assert (outcome.ok, outcome.failures) == (5, [])
    assert [p.relative_to(tmp / "prosody") for p in list_shards(tmp / "prosody")] == [p.relative_to(roi) for p in list_shards(roi)]
    for path in list_shards(roi):
        roi_rows = list(ShardReader(path).iter_rows(["utt_id", "n_frames"]))
        rows = list(ShardReader(tmp / "prosody" / path.relative_to(roi)))
        assert [r["utt_id"] for r in rows] == [r["utt_id"] for r in roi_rows]
        for row, roi_row in zip(rows, roi_rows):
            for col in ("f0", "voiced", "energy"):
                assert unpack(row, col).shape == (4 * roi_row["n_frames"],)


def test_statistics_come_from_train_only(stage):
    tmp, _, _ = stage
    meta = json.loads((tmp / "prosody" / "prosody.json").read_text())
    stats = meta["stats"]
    assert stats["split"] == "train" and set(stats["speakers"]) == {"a", "b"}  # unseen c has none
    rows = {r["utt_id"]: r for p in list_shards(tmp / "prosody") for r in ShardReader(p)}
    log_f0 = np.concatenate([np.log(unpack(rows[u], "f0")[unpack(rows[u], "voiced")].astype(np.float64)) for u in ("a_0", "a_1")])
    energies = np.concatenate([unpack(rows[u], "energy") for u in ("a_0", "a_1")])
    a = stats["speakers"]["a"]
    assert a["voiced_frames"] == len(log_f0) and a["frames"] == len(energies)
    np.testing.assert_allclose([a["log_f0_mean"], a["log_f0_std"]], [log_f0.mean(), log_f0.std()], rtol=1e-9)
    np.testing.assert_allclose([a["energy_mean"], a["energy_std"]], [energies.mean(), energies.std()], rtol=1e-5)
    assert abs(a["log_f0_mean"] - np.log(115.0)) < 0.05
    assert stats["global"]["voiced_frames"] == a["voiced_frames"] + stats["speakers"]["b"]["voiced_frames"]
    assert meta["frame_rate_hz"] == 100.0 and meta["frames_per_video_frame"] == {"25": 4.0}

    changed = write_roi(tmp / "roi-changed", _utts(f0_test=300.0, f0_unseen=90.0))
    run_prosody(MEL, CFG, Executor(workers=1), changed, tmp / "changed")
    after = json.loads((tmp / "changed" / "prosody.json").read_text())
    assert after["stats"] == stats
    assert (tmp / "changed" / "test" / "a-000.parquet").read_bytes() != (tmp / "prosody" / "test" / "a-000.parquet").read_bytes()


def test_a_pool_writes_the_bytes_of_the_inline_run(stage):
    # pyin's numba kernels are compiled in the parent first (compile_pitch): workers compiling them at once
    # corrupted numba's on-disk cache, and every later pooled run segfaulted
    tmp, roi, _ = stage
    outcome = run_prosody(MEL, CFG, Executor(workers=2), roi, tmp / "pooled")
    assert (outcome.ok, outcome.failures) == (5, [])
    for path in list_shards(tmp / "prosody"):
        assert (tmp / "pooled" / path.relative_to(tmp / "prosody")).read_bytes() == path.read_bytes()


def test_real_grid_clip_has_speech_like_pitch():
    audio = grid_audio("lbax4n")
    e = energy(audio, MEL)
    f0, voiced = pitch(audio, e, MEL, CFG)
    assert 0.2 < voiced.mean() < 0.7
    assert 70 < np.median(f0[voiced]) < 300
    assert not voiced[:10].any()  # the clip opens with a pause
