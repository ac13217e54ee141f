"""Units stage: MFCC units on the 50 Hz grid, aligned with the roi shards, seeded, fitted on train only."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import paths
import pytest
from roi_samples import SPF, babble, one_torch_thread, write_roi  # noqa: F401 - autouse fixture

from pipeline.config import Params, load_params
from pipeline.executor import Executor
from pipeline.features.mfcc import mfcc_features
from pipeline.features.stage import index_roi
from pipeline.features.units import UnitsConfig, run_units, select_fit_utterances
from pipeline.shards import ShardReader, list_shards, unpack

SHIPPED = Params(load_params(paths.PARAMS)).parse("units", UnitsConfig)
CFG = replace(SHIPPED, clusters=12, kmeans=replace(SHIPPED.kmeans, n_init=3))
SEED = 0
TRAIN = [(f"{spk}_{i}", spk, "train", babble(10 * k + i, 1.0 + 0.12 * i)) for k, spk in enumerate("ab") for i in range(3)]
HELD_OUT = [("a_9", "a", "test", babble(50, 1.3)), ("c_0", "c", "unseen", babble(60, 0.9)), ("c_1", "c", "unseen", babble(61, 1.1))]


@pytest.fixture(scope="module")
def roi(tmp_path_factory):
    return write_roi(tmp_path_factory.mktemp("roi"), TRAIN + HELD_OUT)


@pytest.fixture(scope="module")
def units(roi, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "units"
    outcome = run_units(CFG, SEED, Executor(workers=1), roi, out)
    return out, outcome


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_units_are_aligned_with_the_roi_shards(roi, units):
    out, outcome = units
    assert (outcome.ok, outcome.failures) == (len(TRAIN + HELD_OUT), [])
    assert [p.relative_to(out) for p in list_shards(out)] == [p.relative_to(roi) for p in list_shards(roi)]
    for path in list_shards(roi):
        roi_rows = list(ShardReader(path).iter_rows(["utt_id", "n_frames"]))
        rows = list(ShardReader(out / path.relative_to(roi)))
        assert [r["utt_id"] for r in rows] == [r["utt_id"] for r in roi_rows]
        assert list(rows[0])[0] == "utt_id"
        for row, roi_row in zip(rows, roi_rows):
            u = unpack(row, "units")
            assert row["status"] == "ok" and row["reason"] is None
            assert u.dtype == np.int16 and u.shape == (2 * roi_row["n_frames"],)  # 50 Hz: two per 25 fps frame
            assert 0 <= u.min() and u.max() < 12
    all_units = np.concatenate([unpack(r, "units") for p in list_shards(out) for r in ShardReader(p)])
    assert len(np.unique(all_units)) >= 8  # the clusters are really used, not one label everywhere


def test_metadata_names_the_source_rate_and_train_fit(units):
    out, _ = units
    meta = json.loads((out / "units.json").read_text())
    assert meta["source"] == "mfcc" and meta["features"]["kind"] == "mfcc" and meta["features"]["dim"] == 39
    assert meta["unit_rate_hz"] == 50.0 and meta["units_per_video_frame"] == {"25": 2.0}
    assert meta["fit"]["split"] == "train" and meta["fit"]["utterances"] == len(TRAIN)
    assert meta["fit"]["frames"] == sum(2 * (len(a) // SPF) for *_, a in TRAIN)
    assert np.load(out / "centroids.npy").shape == (12, 39)


def test_same_seed_same_bytes_other_seed_other_centroids(roi, units, tmp_path):
    out, _ = units
    run_units(CFG, SEED, Executor(workers=1), roi, tmp_path / "again")
    assert _files(tmp_path / "again") == _files(out)
    run_units(CFG, 1, Executor(workers=1), roi, tmp_path / "seed1")
    assert not np.array_equal(np.load(tmp_path / "seed1" / "centroids.npy"), np.load(out / "centroids.npy"))


def test_worker_processes_write_the_same_bytes(roi, units, tmp_path):
    out, _ = units
    run_units(CFG, SEED, Executor(workers=2), roi, tmp_path / "pool")
    assert _files(tmp_path / "pool") == _files(out)


def test_kmeans_never_sees_held_out_audio(units, tmp_path):
    out, _ = units
    changed = [(u, s, split, babble(99 + i, len(a) / 16000)) for i, (u, s, split, a) in enumerate(HELD_OUT)]
    roi2 = write_roi(tmp_path / "roi", TRAIN + changed)
    run_units(CFG, SEED, Executor(workers=1), roi2, tmp_path / "units")
    before, after = _files(out), _files(tmp_path / "units")
    assert after["centroids.npy"] == before["centroids.npy"]
    assert all(after[k] == before[k] for k in before if k.startswith("train/"))
    assert after["test/a-000.parquet"] != before["test/a-000.parquet"]  # the change did reach the labels


def test_failed_utterance_keeps_its_row_with_a_reason(tmp_path):
    bad = np.full(16000, np.nan, dtype=np.float32)
    roi = write_roi(tmp_path / "roi", TRAIN + [("a_8", "a", "test", bad), HELD_OUT[0]])
    outcome = run_units(CFG, SEED, Executor(workers=1), roi, tmp_path / "units")
    assert outcome.ok == len(TRAIN) + 1
    assert outcome.failures == [{"utt_id": "a_8", "shard": "test/a-000.parquet",
                                 "reason": "ValueError: audio has non-finite samples (NaN or inf)"}]
    rows = list(ShardReader(tmp_path / "units" / "test" / "a-000.parquet"))
    assert [(r["utt_id"], r["status"]) for r in rows] == [("a_8", "failed"), ("a_9", "ok")]
    assert rows[0]["units"] is None and len(unpack(rows[1], "units")) == 2 * (len(HELD_OUT[0][3]) // SPF)
    assert json.loads((tmp_path / "units" / "units.json").read_text())["failures"] == outcome.failures
    assert "1 failed; first: a_8: ValueError" in outcome.line()
    with pytest.raises(RuntimeError, match="more than 10% failed"):
        outcome.check(0.1)


def test_clear_messages_for_impossible_fits(roi, tmp_path):
    with pytest.raises(ValueError, match="needs at least units.clusters=5000 frames"):
        run_units(replace(CFG, clusters=5000), SEED, Executor(workers=1), roi, tmp_path / "u")
    held_out_only = write_roi(tmp_path / "roi", HELD_OUT)
    with pytest.raises(ValueError, match="no train utterances"):
        run_units(CFG, SEED, Executor(workers=1), held_out_only, tmp_path / "u")
    with pytest.raises(FileNotFoundError, match="run the roi stage first"):
        run_units(CFG, SEED, Executor(workers=1), tmp_path / "nothing", tmp_path / "u")
    assert not (tmp_path / "u").exists()


def test_fit_sample_is_seeded_train_only_and_capped(roi):
    keys = index_roi(roi)
    half = replace(CFG, fit_fraction=0.5)
    chosen = select_fit_utterances(keys, half, SEED)
    assert len(chosen) == 3 and all(k.split == "train" for k in chosen)
    assert chosen == select_fit_utterances(keys, half, SEED)
    assert any(select_fit_utterances(keys, half, s) != chosen for s in range(1, 5))
    capped = select_fit_utterances(keys, replace(CFG, max_fit_frames=120), SEED)
    assert sum(2 * k.n_frames for k in capped) <= 120 and len(capped) >= 1


def test_mfcc_frames_sit_on_the_unit_grid():
    x = np.zeros(48000, np.float32)
    x[40 * 320 + 100 : 40 * 320 + 220] = np.sin(np.arange(120) * 1.3)  # a click inside unit 40's 20 ms
    feats = mfcc_features(x)
    assert feats.shape == (150, 39)
    assert int(np.argmax(feats[:, 0])) == 40  # c0 follows the log energy of each frame
