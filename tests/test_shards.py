"""Shard storage: arrays round-trip, random access matches sequential reads, plans are stable."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.shards import ShardReader, list_shards, pack, plan_shards, unpack, write_shard


def _rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"utt_id": f"u{i:02d}", **pack("x", rng.integers(0, 255, (i + 1, 3, 2), dtype=np.uint8))} for i in range(n)]


def test_arrays_round_trip_with_dtype_and_shape(tmp_path):
    rows = _rows(20)
    write_shard(tmp_path / "s.parquet", rows)
    reader = ShardReader(tmp_path / "s.parquet")
    assert len(reader) == 20 and reader.utt_ids == [r["utt_id"] for r in rows]
    for i in (0, 7, 8, 19):  # both sides of a row-group boundary
        got = unpack(reader.read(i, columns=["utt_id", "x"]), "x")
        assert got.dtype == np.uint8 and np.array_equal(got, unpack(rows[i], "x"))
    assert [r["utt_id"] for r in reader.iter_rows(["utt_id"])] == reader.utt_ids
    with pytest.raises(IndexError, match="out of range"):
        reader.read(20)


def test_empty_shard_is_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(ValueError, match="empty shard"):
        write_shard(tmp_path / "s.parquet", [])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):  # pyarrow.ArrowInvalid: an object column cannot be stored
        write_shard(tmp_path / "s.parquet", [{"utt_id": "a", "x": object()}])
    assert list_shards(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_plan_is_sorted_grouped_and_bounded():
    keys = [("train", "s2", "s2_b"), ("train", "s1", "s1_c"), ("test", "s1", "s1_a"), ("train", "s1", "s1_a"), ("train", "s1", "s1_b")]
    plan = plan_shards(reversed(keys), max_rows=2)
    assert plan == {
        "test/s1-000.parquet": ["s1_a"],
        "train/s1-000.parquet": ["s1_a", "s1_b"],
        "train/s1-001.parquet": ["s1_c"],
        "train/s2-000.parquet": ["s2_b"],
    }
